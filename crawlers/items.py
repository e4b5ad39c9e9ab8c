"""The item a spider yields: one regulator notice, recall or article, with its raw body for audit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass
class NoticeItem:
    """One notice as a source published it. Spiders fill what the source has and leave the rest empty."""

    source: str
    """Name of the source (the YAML file's stem), e.g. ``uk_opss_alerts``."""
    source_id: str
    """The source's own identifier of the notice (alert number, recall id, content id)."""
    url: str
    """Where a person can read the notice."""
    title: str = ""
    text: str = ""
    """Plain text of the notice; markup is stripped by the spider, never rendered later."""
    published: date | None = None
    updated: date | None = None
    effective_date: date | None = None
    comment_deadline: date | None = None
    language: str | None = None
    product_name: str | None = None
    brand: str | None = None
    model: str | None = None
    gtin: str | None = None
    batch: str | None = None
    category_labels: list[str] = field(default_factory=list)
    """The source's own product-category labels, verbatim."""
    risk_labels: list[str] = field(default_factory=list)
    """The source's own risk / hazard labels, verbatim."""
    country_labels: list[str] = field(default_factory=list)
    """Countries the source names (notifying, sold in, origin), verbatim; roles are in ``labels``."""
    labels: dict[str, Any] = field(default_factory=dict)
    """Every other label the source assigns (risk level, measures, notifying country, origin, ...)."""
    raw_body: bytes = b""
    """The bytes of the response the notice was read from (kept compressed, content-addressed)."""
    raw_content_type: str = ""

    def content_fields(self) -> dict[str, Any]:
        """The fields whose change makes a new version (everything the source said, not the raw bytes)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("raw_body", "raw_content_type"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, (date, datetime)):
                value = value.isoformat()
            out[f.name] = value
        return out

    def content_hash(self) -> str:
        payload = json.dumps(self.content_fields(), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
