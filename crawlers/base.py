"""What every Risk Radar spider shares: its source config, item building, leftover-field and failure reports."""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import lxml.html
import scrapy
from lxml import etree
from parsel import Selector
from scrapy.exceptions import IgnoreRequest
from stdnum import ean
from w3lib.html import remove_comments, remove_tags, remove_tags_with_content, replace_entities

from crawlers.items import NoticeItem
from crawlers.sources import SourceConfig, load_source
from radar.settings import get_settings

log = logging.getLogger(__name__)

# Known silent failures: names used in stats, run records and the health page.
FAILURE_HTTP_ERROR = "http_error"
FAILURE_ERROR_BODY = "error_body"  # HTTP 200 whose body is an error message
FAILURE_JS_SHELL = "javascript_shell"  # a page that needs JavaScript instead of data
FAILURE_EMPTY = "empty"  # an empty feed, page or result list
FAILURE_MALFORMED = "malformed"  # truncated or invalid XML / JSON
FAILURE_LAYOUT = "layout_changed"  # a selector or key that always matched found nothing
FAILURE_ENCODING = "wrong_encoding"  # bytes that are not in the encoding the response declares
FAILURE_OFFSITE_REDIRECT = "offsite_redirect"  # a redirect to a host the source does not list: never followed
FAILURE_ROBOTS = "robots_forbidden"  # a request the publisher's robots.txt forbids: never sent


class DropReported(IgnoreRequest):
    """A request a downloader middleware dropped after reporting it as a named failure; errbacks say no more."""

_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_BLOCK_END = re.compile(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>")
# A script or style that is never closed runs to the end of the text, as it would in a browser.
_OPEN_SCRIPT = re.compile(r"(?is)<\s*(script|style)\b.*\Z")
_TAG_LIKE = re.compile(r"<\s*[/!a-zA-Z]")
_CLEAN_ROUNDS = 3  # markup escaped twice decodes in two rounds; a third finds nothing or stops a loop


def _strip_markup(text: str) -> str:
    text = remove_comments(text)
    text = remove_tags_with_content(text, which_ones=("script", "style", "noscript", "template"))
    text = _OPEN_SCRIPT.sub("", text)
    text = _BLOCK_END.sub("\n", text)
    return remove_tags(text)


def clean_text(value: Any) -> str:
    """Markup-free, whitespace-normalised text. Script and style content is dropped, never kept as text.

    Entities are decoded and the result stripped again, so markup escaped once or twice
    (``&lt;script&gt;…``) never comes out as literal ``<script>`` text.
    """
    if value is None:
        return ""
    text = str(value)
    for _ in range(_CLEAN_ROUNDS):
        if _TAG_LIKE.search(text):
            text = _strip_markup(text)
        decoded = replace_entities(text)
        if decoded == text:
            break
        text = decoded
    if _TAG_LIKE.search(text):  # still markup after the last round: strip it, never decode further
        text = _strip_markup(text)
    text = _CONTROL.sub("", text)
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


def week_start(days_back: int) -> date:
    """The Monday on or before ``days_back`` days ago.

    A "since" parameter taken from it keeps a source's request URL the same for a whole week, so the
    HTTP cache can revalidate the response instead of fetching a new one every day.
    """
    start = date.today() - timedelta(days=days_back)
    return start - timedelta(days=start.weekday())


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


def as_list(value: Any) -> list:
    """A field that a source sends as one value or as a list, as a list (empty for None or "")."""
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]


def as_int(value: Any, default: int = 0) -> int:
    """A count a source sends (as a number or a string), or ``default`` when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def unique(values: Iterable[Any]) -> list:
    """The truthy values in first-seen order, each once."""
    return list(dict.fromkeys(value for value in values if value))


# -- product identifiers ---------------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"(?<!\d)(\d{14}|\d{13}|\d{12}|\d{8})(?!\d)")
# Printed barcodes are often grouped ("5 060458 122339", "0-11213-90380"): digits with single separators.
_GROUPED = re.compile(r"(?<![\d-])\d(?:[ -]?\d){7,13}(?![\d-])")


def gtin_candidates(*values: Any) -> list[str]:
    """Every GTIN (EAN-8, UPC-A, EAN-13, GTIN-14) in the values whose check digit is right, in order."""
    found: list[str] = []
    for value in values:
        text = str(value or "")
        runs = _DIGIT_RUN.findall(text)
        runs += [re.sub(r"[ -]", "", m) for m in _GROUPED.findall(text) if not m.isdigit()]
        found += [run for run in runs if len(run) in (8, 12, 13, 14) and ean.is_valid(run)]
    return unique(found)


def find_gtin(*values: Any) -> str | None:
    """The first valid GTIN in the values: a number with a wrong check digit is not a barcode."""
    candidates = gtin_candidates(*values)
    return candidates[0] if candidates else None


# -- recognising what came back instead of data ----------------------------------------------------

_JS_PHRASE = re.compile(
    r"(?i)(enable|turn on|activate|allow)\s+javascript|javascript\s+(is\s+)?(required|disabled|needed|must be"
    r" enabled|needs to be enabled)|requires?\s+javascript|without\s+javascript")
_ERROR_WORDS = re.compile(
    r"(?i)\b(error|unavailable|not found|forbidden|denied|sorry|try again|maintenance|too many requests|"
    r"bad gateway|time-?out|temporarily|exception|blocked|captcha|problem)\b")
_SHELL_TEXT_CHARS = 200  # a data page or an error page says more than this; an app shell says less


def classify_html(body: bytes) -> str:
    """FAILURE_JS_SHELL for a page that needs JavaScript to show anything, FAILURE_ERROR_BODY otherwise.

    A shell has scripts (or a <noscript> / "enable JavaScript" note) and hardly any visible text;
    an error page says what went wrong in words a person can read.
    """
    try:
        doc = lxml.html.fromstring(body)
    except (etree.ParserError, ValueError):
        return FAILURE_ERROR_BODY
    scripts = bool(doc.xpath("//script | //noscript"))
    if _JS_PHRASE.search(" ".join(doc.xpath("//noscript//text() | //body//text()"))):
        return FAILURE_JS_SHELL
    for node in doc.xpath("//script | //style | //noscript | //template"):
        node.drop_tree()
    title = " ".join(doc.xpath("//title//text()"))
    body_nodes = doc.xpath("//body")
    visible = clean_text(body_nodes[0].text_content() if body_nodes else "")
    if _ERROR_WORDS.search(f"{title} {visible}"):
        return FAILURE_ERROR_BODY
    if scripts and len(visible) < _SHELL_TEXT_CHARS:
        return FAILURE_JS_SHELL
    return FAILURE_ERROR_BODY


def _looks_like_html(body: bytes) -> bool:
    head = body.lstrip()[:300].lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


_XML_DECLARED = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']")
_XML_PROLOG = re.compile(rb"^\s*<\?xml[^>]*\?>")


def xml_fields(node: Selector, children: str = "*", multi: Iterable[str] = ()) -> dict[str, Any]:
    """Child element name → its text; names in ``multi`` (repeated elements) map to a list of texts."""
    multi = set(multi)
    out: dict[str, Any] = {}
    for child in node.xpath(children):
        tag, text = child.root.tag, child.xpath("string()").get("")
        if tag in multi:
            out.setdefault(tag, []).append(text)
        else:
            out[tag] = text
    return out


def record_bytes(record: Any) -> bytes:
    """One source record as canonical JSON bytes: the raw body of a notice read from a list of records."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")


class RadarSpider(scrapy.Spider):
    """Base spider: knows its SourceConfig, builds NoticeItems, and reports leftovers and silent failures."""

    def __init__(self, *args: Any, source: SourceConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source or load_source(get_settings().sources_path / f"{self.name}.yml")
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

    def report_offsite_redirect(self, url: str, target: str, hosts: Iterable[str]) -> None:
        """Report that ``url`` redirected to ``target``, outside the source's ``hosts``, and was not followed."""
        self.report_failure(FAILURE_OFFSITE_REDIRECT, "%s redirects to %s, outside %s; not followed", url, target,
                            ", ".join(hosts))

    def on_error(self, failure: Any) -> None:
        if failure.check(DropReported):
            return
        request = getattr(failure, "request", None)
        url = request.url if request is not None else "?"
        response = getattr(failure.value, "response", None)
        if response is not None:
            self.report_failure(FAILURE_HTTP_ERROR, "HTTP %s from %s", response.status, url)
        else:
            self.report_failure(FAILURE_HTTP_ERROR, "%s fetching %s", failure.getErrorMessage() or failure.type.__name__, url)

    # -- bodies ------------------------------------------------------------------------------------

    def _unusable(self, response: scrapy.http.Response, expected: str) -> bool:
        """Report an empty body or an HTML page where ``expected`` data should be; True when so."""
        body = response.body
        if not body.strip():
            self.report_failure(FAILURE_EMPTY, "empty body from %s", response.url)
            return True
        if _looks_like_html(body):
            self.report_failure(classify_html(body), "HTML instead of %s from %s", expected, response.url)
            return True
        return False

    def decode_body(self, response: scrapy.http.Response, declared: str | None = None) -> str:
        """The body as text in its declared encoding (UTF-8 by default).

        Bytes that are not valid in that encoding are reported as ``wrong_encoding`` and read as
        Windows-1252 (a superset of Latin-1, what mislabelled European text nearly always is), so the
        words survive instead of turning into replacement characters.
        """
        body = response.body
        encoding = declared or _header_charset(response) or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = "utf-8"
        try:
            return body.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            self.report_failure(FAILURE_ENCODING, "body of %s is not %s (%s), read as Windows-1252",
                                response.url, encoding, exc.reason)
            return body.decode("cp1252", errors="replace")

    def load_json(self, response: scrapy.http.Response) -> Any:
        """The response body as JSON, or None after reporting which known failure it is."""
        if self._unusable(response, "JSON"):
            return None
        if response.body.lstrip()[:1] == b"<":  # markup that does not announce itself as HTML in its first bytes
            self.report_failure(classify_html(response.body), "markup instead of JSON from %s", response.url)
            return None
        try:
            # JSON is UTF-8 by definition (RFC 8259), whatever charset a misconfigured server names.
            data = json.loads(self.decode_body(response, declared="utf-8"))
        except ValueError as exc:
            self.report_failure(FAILURE_MALFORMED, "invalid JSON from %s: %s", response.url, exc)
            return None
        if data is None:
            self.report_failure(FAILURE_EMPTY, "JSON null from %s", response.url)
        return data

    def load_xml(self, response: scrapy.http.Response, root_tag: str | tuple[str, ...]) -> Selector | None:
        """The body as a namespace-free XML selector, or None after reporting which known failure it is."""
        if self._unusable(response, "XML"):
            return None
        body = response.body
        declared = _XML_DECLARED.match(body)
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
        try:
            body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            # Re-encode what the bytes really are and drop the prolog that lied about them, so the
            # strict parse below judges the structure rather than failing on one accented letter.
            body = _XML_PROLOG.sub(b"", self.decode_body(response, declared=encoding).encode("utf-8"), count=1)
        try:
            # Strict parse: the recovering parser would turn a truncated feed into a silently shorter one.
            root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            self.report_failure(FAILURE_MALFORMED, "invalid XML from %s: %s", response.url, exc)
            return None
        selector = Selector(root=root, type="xml")
        selector.remove_namespaces()
        expected = (root_tag,) if isinstance(root_tag, str) else root_tag
        if selector.root.tag not in expected:
            self.report_failure(FAILURE_LAYOUT, "root element <%s>, expected <%s>, in %s",
                                selector.root.tag, "> or <".join(expected), response.url)
            return None
        return selector


def _header_charset(response: scrapy.http.Response) -> str | None:
    content_type = (response.headers.get("Content-Type") or b"").decode("latin-1")
    match = re.search(r"charset=[\"']?([A-Za-z0-9._-]+)", content_type)
    return match.group(1) if match else None
