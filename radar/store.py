"""Storing notices: content-addressed raw bodies, one current row per notice, every version kept."""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from crawlers.items import NoticeItem
from radar.models import Notice, NoticeVersion, RawBody, utcnow

log = logging.getLogger(__name__)

NOTICE_FIELDS = (
    "url", "title", "text", "published", "updated", "effective_date", "comment_deadline", "language",
    "product_name", "brand", "model", "gtin", "batch", "category_labels", "risk_labels", "country_labels",
    "labels",
)


@dataclass
class StoreResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    notice_ids: list[int] = field(default_factory=list)

    def add(self, other: "StoreResult") -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.notice_ids.extend(other.notice_ids)


def store_raw(session: Session, body: bytes, content_type: str = "") -> str | None:
    """Keep a response body once per content hash; returns the hash (None for an empty body)."""
    if not body:
        return None
    sha = hashlib.sha256(body).hexdigest()
    if session.get(RawBody, sha) is not None:
        return sha
    try:
        with session.begin_nested():
            session.add(RawBody(sha256=sha, content_type=content_type[:200], size=len(body), data=zlib.compress(body, 6)))
    except IntegrityError:
        # Another writer stored the same body between our check and insert: it is there, which is all we need.
        log.debug("raw body %s stored concurrently", sha)
    return sha


def load_raw(session: Session, sha: str) -> bytes | None:
    row = session.get(RawBody, sha)
    return zlib.decompress(row.data) if row else None


def store_items(session: Session, items: Iterable[NoticeItem]) -> StoreResult:
    """Insert new notices, version edited ones, touch unchanged ones. Safe to call again with the same items."""
    items = list(items)
    result = StoreResult()
    if not items:
        return result
    keys = {(i.source, i.source_id) for i in items}
    existing: dict[tuple[str, str], Notice] = {}
    key_list = list(keys)
    for start in range(0, len(key_list), 500):
        chunk = key_list[start:start + 500]
        rows = session.exec(select(Notice).where(tuple_(Notice.source, Notice.source_id).in_(chunk)))
        for row in rows:
            existing[(row.source, row.source_id)] = row
    raw_seen: dict[bytes, str | None] = {}
    now = utcnow()
    for item in items:
        content_hash = item.content_hash()
        body_key = hashlib.sha1(item.raw_body).digest()
        if body_key not in raw_seen:
            raw_seen[body_key] = store_raw(session, item.raw_body, item.raw_content_type)
        raw_sha = raw_seen[body_key]
        values = {name: getattr(item, name) for name in NOTICE_FIELDS}
        notice = existing.get((item.source, item.source_id))
        if notice is None:
            notice = Notice(source=item.source, source_id=item.source_id, version=1, content_hash=content_hash,
                            raw_sha256=raw_sha, first_seen=now, last_seen=now, **values)
            session.add(notice)
            session.flush()
            session.add(NoticeVersion(notice_id=notice.id, version=1, content_hash=content_hash,
                                      fields=item.content_fields(), raw_sha256=raw_sha, seen_at=now))
            existing[(item.source, item.source_id)] = notice
            result.new += 1
        elif notice.content_hash == content_hash:
            notice.last_seen = now
            session.add(notice)
            result.unchanged += 1
        else:
            notice.version += 1
            for name, value in values.items():
                setattr(notice, name, value)
            notice.content_hash = content_hash
            notice.raw_sha256 = raw_sha
            notice.last_seen = now
            session.add(notice)
            session.flush()
            session.add(NoticeVersion(notice_id=notice.id, version=notice.version, content_hash=content_hash,
                                      fields=item.content_fields(), raw_sha256=raw_sha, seen_at=now))
            log.info("%s: notice %s edited by the source, stored as version %d", item.source, item.source_id, notice.version)
            result.updated += 1
        result.notice_ids.append(notice.id)
    session.flush()
    return result
