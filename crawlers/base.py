"""What every Risk Radar spider shares: its source config, item building, leftover-field and failure reports."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import scrapy
from w3lib.html import remove_tags, remove_tags_with_content, replace_entities

from crawlers.items import NoticeItem
from crawlers.sources import SourceConfig, load_sources

log = logging.getLogger(__name__)

# Known silent failures: names used in stats, run records and the health page.
FAILURE_HTTP_ERROR = "http_error"
FAILURE_ERROR_BODY = "error_body"  # HTTP 200 whose body is an error message
FAILURE_JS_SHELL = "javascript_shell"  # a page that needs JavaScript instead of data
FAILURE_EMPTY = "empty"  # an empty feed, page or result list
FAILURE_MALFORMED = "malformed"  # truncated or invalid XML / JSON
FAILURE_LAYOUT = "layout_changed"  # a selector or key that always matched found nothing

_WS = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def clean_text(value: Any) -> str:
    """Markup-free, whitespace-normalised text. Script and style content is dropped, never kept as text."""
    if value is None:
        return ""
    text = str(value)
    if "<" in text:
        text = remove_tags_with_content(text, which_ones=("script", "style"))
        text = re.sub(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", "\n", text)
        text = remove_tags(text)
    text = replace_entities(text)
    lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def parse_date(value: Any) -> date | None:
    """A date from the formats regulators use (ISO 8601, RFC 822, d/m/Y); None when it cannot be read."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(text).date()
    except (TypeError, ValueError, IndexError):
        pass
    for fmt in ("%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y", "%d %B %Y", "%B %d, %Y", "%Y%m%d"):
        try:
            return datetime.strptime(text[:40], fmt).date()
        except ValueError:
            continue
    return None


def split_labels(value: Any, sep: str = ",") -> list[str]:
    """A source label field as a clean list, whether it came as a list, a comma list or one string."""
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else str(value).split(sep)
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("label") or item.get("name") or item.get("value") or ""
        item = clean_text(item)
        if item and item not in out:
            out.append(item)
    return out


class RadarSpider(scrapy.Spider):
    """Base spider: knows its SourceConfig, builds NoticeItems, and reports leftovers and silent failures."""

    def __init__(self, *args: Any, source: SourceConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source or load_sources()[self.name]
        self._leftovers_seen: set[str] = set()

    async def start(self):  # noqa: D401 - Scrapy's entry point
        for request in self.start_requests_list():
            yield request

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        yield scrapy.Request(self.source.url, callback=self.parse, errback=self.on_error)

    # -- items -------------------------------------------------------------------------------------

    def make_item(self, response: scrapy.http.Response | None, **fields: Any) -> NoticeItem:
        item = NoticeItem(source=self.name, **fields)
        if response is not None and not item.raw_body:
            item.raw_body = response.body
            item.raw_content_type = (response.headers.get("Content-Type") or b"").decode("latin-1")
        if not item.language:
            item.language = self.source.language
        return item

    def leftovers(self, record: dict[str, Any], where: str) -> None:
        """Log, once per run, the fields of a source record no parser popped (a format change to notice)."""
        for key in sorted(record):
            tag = f"{where}.{key}"
            if tag in self._leftovers_seen:
                continue
            self._leftovers_seen.add(tag)
            self.crawler.stats.inc_value("radar/leftover_fields") if getattr(self, "crawler", None) else None
            log.info("%s: field %s is not read by the spider", self.name, tag)

    # -- failures ----------------------------------------------------------------------------------

    def report_failure(self, kind: str, message: str, *args: Any) -> None:
        """Record a named failure: it is logged, counted in the run's stats and shown as the run's error."""
        text = message % args if args else message
        log.warning("%s: %s: %s", self.name, kind, text)
        if getattr(self, "crawler", None):
            stats = self.crawler.stats
            stats.inc_value(f"radar/failure/{kind}")
            errors = stats.get_value("radar/errors") or []
            if len(errors) < 50:
                errors.append(f"{kind}: {text}")
                stats.set_value("radar/errors", errors)

    def on_error(self, failure: Any) -> None:
        request = getattr(failure, "request", None)
        url = request.url if request is not None else "?"
        response = getattr(failure.value, "response", None)
        if response is not None:
            self.report_failure(FAILURE_HTTP_ERROR, "HTTP %s from %s", response.status, url)
        else:
            self.report_failure(FAILURE_HTTP_ERROR, "%s fetching %s", failure.getErrorMessage() or failure.type.__name__, url)

    def load_json(self, response: scrapy.http.Response) -> Any:
        """The response body as JSON, or None after reporting which known failure it is."""
        body = response.body
        if not body.strip():
            self.report_failure(FAILURE_EMPTY, "empty body from %s", response.url)
            return None
        head = body.lstrip()[:200].lower()
        if head.startswith(b"<"):
            kind = FAILURE_JS_SHELL if b"<script" in body[:20000].lower() or b"enable javascript" in body.lower() else FAILURE_ERROR_BODY
            self.report_failure(kind, "HTML instead of JSON from %s", response.url)
            return None
        try:
            return json.loads(body.decode(response.encoding or "utf-8", errors="replace") if isinstance(body, bytes) else body)
        except (ValueError, UnicodeDecodeError) as exc:
            self.report_failure(FAILURE_MALFORMED, "invalid JSON from %s: %s", response.url, exc)
            return None
