"""What the feed, legislation, trade-control and news spiders share: feeds, redirects, articles, stored state."""

from __future__ import annotations

import calendar
import functools
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import feedparser
import scrapy
from parsel import Selector

from crawlers.base import (FAILURE_EMPTY, FAILURE_ENCODING, FAILURE_ERROR_BODY, FAILURE_HTTP_ERROR, FAILURE_JS_SHELL,
                           FAILURE_LAYOUT, FAILURE_MALFORMED, RadarSpider, classify_html, clean_text, parse_date)

log = logging.getLogger(__name__)

REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
_CARRIED_META = ("download_maxsize", "download_timeout")  # per-request limits a redirected request keeps

# Keys feedparser derives from others (``title_detail`` from ``title``...) or uses for its own bookkeeping:
# popping them keeps the leftover-field report about what the publisher sent.
_FEEDPARSER_PLUMBING = ("title_detail", "summary_detail", "subtitle_detail", "rights_detail", "guidislink",
                        "published_parsed", "updated_parsed", "created_parsed", "expired_parsed", "links",
                        "author_detail", "authors", "href")
_ROOT_CLOSE = re.compile(rb"</\s*(?:[\w-]+:)?(rss|feed|rdf:RDF|RDF)\s*>\s*$")


# -- hosts and redirects ---------------------------------------------------------------------------


def allowed_hosts(spider: RadarSpider) -> list[str]:
    """The hosts the spider may read from: the runner's ``allowed_domains``, else the source's own ([]: any)."""
    return list(getattr(spider, "allowed_domains", None) or spider.source.domains())


def host_allowed(url: str, hosts: Iterable[str]) -> bool:
    """True when the URL's host is one of the hosts or below one; an empty list allows every host."""
    hosts = list(hosts)
    host = (urlsplit(url).hostname or "").lower()
    return not hosts or any(host == allowed or host.endswith("." + allowed) for allowed in hosts)


def guarded_request(url: str, callback: Callable, *, errback: Callable | None = None,
                    cb_kwargs: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> scrapy.Request:
    """A request whose redirects reach the callback, so ``follow_redirects`` can refuse the off-site ones.

    Scrapy's own redirect handling would hand an off-site hop to its offsite filter, which drops it at
    scheduling time (``crawlers.middleware.ReportingOffsiteMiddleware`` reports it): the callback never
    hears of it, so a spider could not keep what it knows without that page (``on_offsite``).
    """
    meta = {**(meta or {}), "dont_redirect": True, "handle_httpstatus_list": list(REDIRECT_CODES)}
    return scrapy.Request(url, callback=callback, errback=errback, cb_kwargs=cb_kwargs or {}, meta=meta)


def follow_redirects(callback: Callable) -> Callable:
    """Decorates a spider callback: a redirect within the source's hosts is followed, any other is reported.

    The hosts are the source's (``allowed_hosts``); a redirect elsewhere is reported as ``offsite_redirect``
    and the spider's ``on_offsite(response, target, **cb_kwargs)`` hook, when it has one, may still yield
    what the spider knows without that page (a feed entry without its article).
    """

    @functools.wraps(callback)
    def wrapper(spider: RadarSpider, response, **kwargs):
        if response.status not in REDIRECT_CODES:
            yield from callback(spider, response, **kwargs) or ()
            return
        location = (response.headers.get("Location") or b"").decode("latin-1").strip()
        hops = int(response.meta.get("radar_redirects", 0)) + 1
        if not location:
            spider.report_failure(FAILURE_HTTP_ERROR, "HTTP %s without a Location from %s", response.status,
                                  response.url)
            return
        target = urljoin(response.url, location)
        hosts = allowed_hosts(spider)
        if not host_allowed(target, hosts):
            spider.report_offsite_redirect(response.url, target, hosts)
            hook = getattr(spider, "on_offsite", None)
            if hook is not None:
                yield from hook(response, target, **kwargs) or ()
            return
        if hops > MAX_REDIRECTS:
            spider.report_failure(FAILURE_HTTP_ERROR, "more than %d redirects from %s", MAX_REDIRECTS, response.url)
            return
        if response.status in (301, 308):
            log.info("%s: %s has moved permanently to %s; update the source's YAML", spider.name, response.url,
                     target)
        request = response.request
        # A fresh request rather than request.replace(): Scrapy's per-download bookkeeping in meta (slot, retries,
        # cache flags) belongs to the first URL; only the callback, its arguments and the limits carry over.
        meta = {key: request.meta[key] for key in _CARRIED_META if key in request.meta}
        yield guarded_request(target, request.callback, errback=request.errback, cb_kwargs=dict(kwargs),
                              meta={**meta, "radar_redirects": hops})

    return wrapper


# -- feeds -----------------------------------------------------------------------------------------


def _markup_instead_of(spider: RadarSpider, response, what: str) -> bool:
    """True (after reporting which failure it is) when an HTML page came where a feed was expected."""
    head = response.body.lstrip()[:300].lower()
    if not (head.startswith((b"<!doctype html", b"<html")) or b"<html" in head):
        return False
    spider.report_failure(classify_html(response.body), "HTML page instead of %s from %s", what, response.url)
    return True


def load_feed(spider: RadarSpider, response) -> feedparser.FeedParserDict | None:
    """The response as a parsed RSS or Atom feed, or None after reporting which known failure it is.

    feedparser recovers from broken XML (a truncated entity, an undeclared one) and says so in
    ``bozo``: the entries it could read are kept and the run is reported as partial, except that
    the last entry of a feed cut off before its closing tag is dropped, since it may be cut too.
    """
    body = response.body
    if not body.strip():
        spider.report_failure(FAILURE_EMPTY, "empty body from %s", response.url)
        return None
    if _markup_instead_of(spider, response, "a feed"):
        return None
    headers = {"content-type": (response.headers.get("Content-Type") or b"").decode("latin-1"),
               "content-location": response.url}
    # A stream, never bytes or a string: feedparser fetches a string that looks like a URL and opens
    # one that names a local file, so a body reading "/etc/passwd" would be read from our disk.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=True,
                              resolve_relative_uris=True)
    entries = list(parsed.entries)
    if parsed.bozo:
        problem = parsed.get("bozo_exception")
        if isinstance(problem, feedparser.CharacterEncodingOverride):
            # Declared one encoding and sent another: feedparser has read it in the one that fits.
            spider.report_failure(FAILURE_ENCODING, "feed %s is not in the encoding it declares (%s), read as %s",
                                  response.url, problem, parsed.get("encoding"))
        elif isinstance(problem, feedparser.NonXMLContentType):
            log.info("%s: %s: %s", spider.name, response.url, problem)  # a feed served as text/plain or text/html
        else:
            truncated = not _ROOT_CLOSE.search(body.rstrip()[-200:])
            if truncated and entries:
                entries = entries[:-1]
            if not entries:
                spider.report_failure(FAILURE_MALFORMED, "no readable entry in the broken feed %s: %s",
                                      response.url, problem)
                return None
            spider.report_failure(FAILURE_MALFORMED, "%s feed %s (%s); kept the %d entries read before the break",
                                  "truncated" if truncated else "not well-formed", response.url, problem,
                                  len(entries))
    if not parsed.version and not entries:
        spider.report_failure(FAILURE_LAYOUT, "no RSS or Atom feed in %s", response.url)
        return None
    if not entries:
        spider.report_failure(FAILURE_EMPTY, "no entries in feed %s", response.url)
        return None
    parsed["entries"] = entries
    return parsed


_DANGLING_ENTITY = re.compile(r"\s*&[#\w]{1,10}$")


def feed_text(value: Any) -> str:
    """Clean text of a feed field, without the stump of an entity a generator cut ("... and &qu")."""
    return _DANGLING_ENTITY.sub("", clean_text(value))


def drop_plumbing(entry: dict[str, Any]) -> None:
    for key in _FEEDPARSER_PLUMBING:
        entry.pop(key, None)


def entry_date(entry: dict[str, Any], *keys: str) -> date | None:
    """The first of the entry's dates that can be read: feedparser's parsed UTC tuple, else the raw text."""
    for key in keys:
        # dict.get, not entry.get: feedparser answers a missing "updated" with "published" (its issue 310).
        parsed = dict.get(entry, f"{key}_parsed")
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc).date()
        value = parse_date(dict.get(entry, key))
        if value:
            return value
    return None


def entry_links(entry: dict[str, Any]) -> list[dict[str, str]]:
    return [link for link in entry.get("links") or [] if isinstance(link, dict) and link.get("href")]


def next_link(feed: feedparser.FeedParserDict) -> str | None:
    """The feed's ``rel="next"`` page (Atom paging, RFC 5005), if it has one."""
    for link in feed.feed.get("links") or []:
        if link.get("rel") == "next" and link.get("href"):
            return link["href"]
    return None


def tag_terms(entry: dict[str, Any]) -> list[str]:
    """The entry's categories (RSS ``<category>``, Atom ``<category term>``), verbatim and once each."""
    terms = []
    for tag in entry.pop("tags", None) or []:
        term = clean_text(tag.get("term") or tag.get("label") or "")
        if term and term not in terms:
            terms.append(term)
    return terms


# -- article pages ---------------------------------------------------------------------------------

_LANG = re.compile(r"^[a-z]{2,3}\b", re.I)


@dataclass
class Article:
    """What trafilatura read from an article page: the main text without navigation, ads and footers."""

    title: str = ""
    text: str = ""
    published: date | None = None
    language: str | None = None
    author: str = ""
    sitename: str = ""
    description: str = ""
    categories: list[str] = field(default_factory=list)


def extract_article(page: str | bytes, url: str) -> Article | None:
    """The main text and metadata of an HTML page, or None when the page has no readable text.

    trafilatura's own language detection needs an extra package, so the language is the one the page
    declares (``<html lang>``, Content-Language, og:locale).
    """
    import trafilatura  # heavy; only the news spiders need it

    # trafilatura warns "discarding data" for every page it finds no text in; the spider reports those pages
    # itself, by failure name, so its own warnings would only double the maintenance queue.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    tree = trafilatura.load_html(page)
    if tree is None:
        return None
    language = _declared_language(tree)
    document = trafilatura.bare_extraction(tree, url=url, with_metadata=True, include_comments=False,
                                           include_tables=True, favor_precision=True)
    if document is None:
        return None
    data = document.as_dict() if hasattr(document, "as_dict") else dict(document)
    text = clean_text(data.get("text") or "")
    if not text:
        return None
    return Article(
        title=clean_text(data.get("title") or ""),
        text=text,
        published=parse_date(data.get("date")),
        language=language,
        author=clean_text(data.get("author") or ""),
        sitename=clean_text(data.get("sitename") or ""),
        description=clean_text(data.get("description") or ""),
        categories=[c for c in (clean_text(c) for c in (data.get("categories") or [])) if c],
    )


def _declared_language(tree) -> str | None:
    candidates = [tree.get("lang"), tree.get("{http://www.w3.org/XML/1998/namespace}lang")]
    candidates += tree.xpath("//meta[translate(@http-equiv,'CONTENTLANGUAGE','contentlanguage')"
                             "='content-language']/@content")
    candidates += tree.xpath("//meta[@property='og:locale']/@content")
    for value in candidates:
        match = _LANG.match((value or "").strip())
        if match:
            return match.group(0).lower()
    return None


# -- Official Journal acts, as EUR-Lex renders them (XHTML with oj-* classes) ----------------------

_ANNEX = re.compile(r"^[‘'\"“]?ANNEX(?:\s+([IVXLC]+))?\s*$", re.I)
_CATEGORY = re.compile(r"^CATEGORY\s+(\d)\s*(?:[-–—:]\s*)?(.*)$", re.I)
_CONTROL = re.compile(r"^([0-9][A-E][0-9]{3})\.?(?:\s+(.*))?$")
_CN = re.compile(r"^(\d{4})(?:[ .]?(\d{2}))?(?:[ .]?(\d{2}))?$")
_AMENDED_ANNEX = re.compile(r"\bAnnex ([IVXLC]+) to ((?:Council |Commission )?(?:Regulation|Decision) \((?:EU|EC)\)"
                            r"(?: No)? \d+/\d+)")


@dataclass
class OjAnnex:
    """One annex of an Official Journal act: its number and title, the CN codes and dual-use categories it lists."""

    number: str = ""
    title: str = ""
    amends: str = ""
    """The annex of another act this one replaces or adds to, when it says so (``Annex XXIII to Regulation ...``)."""
    cn_codes: dict[str, str] = field(default_factory=dict)
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)


def oj_heading(page: Selector) -> str:
    """The act's title: the Official Journal heading paragraphs before the first paragraph of another kind."""
    lines = []
    for paragraph in page.xpath("//p"):
        # "oj-doc-ti" in the Official Journal's XHTML since 2016, "doc-ti" in older acts and consolidated texts.
        if not {"oj-doc-ti", "doc-ti"} & set((paragraph.attrib.get("class") or "").split()):
            if lines:
                break
            continue
        lines.append(clean_text(paragraph.xpath("string()").get("")))
    if not lines:
        return ""
    first = lines[0]
    # "COUNCIL REGULATION (EU) No 833/2014" → "Council Regulation (EU) No 833/2014": "No" keeps its case in the OJ.
    if first.replace(" No ", " NO ").isupper():
        first = " ".join(w.capitalize() if w.isalpha() else w for w in first.split())
    return " ".join([first, *lines[1:]])


def oj_missing_act(page: Selector, body: bytes) -> tuple[str, str]:
    """Which known failure a page without an Official Journal heading is."""
    text = clean_text(" ".join(page.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]").getall()))
    lowered = text.lower()
    # EUR-Lex answers an unknown or withdrawn CELEX number with status 200 and this sentence.
    if "document does not exist" in lowered or "page not found" in lowered or "error" in lowered[:200]:
        return FAILURE_ERROR_BODY, f"an error page ({text[:120]!r}) instead of the act"
    if "enable javascript" in lowered or (b"<script" in body.lower() and len(text) < 300):
        return FAILURE_JS_SHELL, "a script page instead of the act"
    return FAILURE_LAYOUT, "no Official Journal title (p.oj-doc-ti)"


def oj_annexes(page: Selector) -> list[OjAnnex]:
    """Walks paragraphs and table rows in document order, cutting them into annexes and categories."""
    annexes: list[OjAnnex] = []
    current: OjAnnex | None = None
    category: dict[str, Any] | None = None
    expect_title = False
    cn_tables: set[Any] = set()
    for node in page.xpath("//body//p[not(ancestor::table)] | //body//tr"):
        if node.root.tag == "tr":
            if current is None:
                continue
            cells = [clean_text(cell.xpath("string()").get("")) for cell in node.xpath("./td|./th")]
            cells = [c for c in cells if c]
            table = node.xpath("ancestor::table[1]")[0].root
            if any(c.lower().startswith("cn code") for c in cells):
                cn_tables.add(table)
                continue
            if len(cells) >= 2 and table in cn_tables and (code := cn_code(cells[0])):
                current.cn_codes[code] = cells[-1]
            elif category is not None and cells and (m := _CONTROL.match(cells[0])):
                category["entries"].setdefault(m.group(1), m.group(2) or (cells[1] if len(cells) > 1 else ""))
            continue
        text = clean_text(node.xpath("string()").get(""))
        if not text:
            continue
        if m := _ANNEX.match(text):
            # "ANNEX" of an amending act, then "'ANNEX XL" of the annex it replaces: the numbered one is the list.
            if current is not None and not current.number and not current.cn_codes and not current.categories:
                current.number = (m.group(1) or "").upper()
            else:
                current = OjAnnex(number=(m.group(1) or "").upper())
                annexes.append(current)
            category, expect_title = None, True
            continue
        if current is None:
            continue
        if m := _CATEGORY.match(text):
            number = m.group(1)
            category = current.categories.setdefault(number, {"title": _title_case(m.group(2)), "entries": {}})
            expect_title = False
            continue
        if not current.amends and (m := _AMENDED_ANNEX.search(text)) and not current.cn_codes:
            current.amends = f"Annex {m.group(1)} to {m.group(2)}"
        if expect_title and "ti" in (node.attrib.get("class") or "").replace("-", " ").split():
            # The annex's own heading (oj-ti-grseq-1, oj-ti-annex-2); a plain paragraph is body text.
            current.title = text.strip("‘’'\"“” ")
            expect_title = False
            continue
        if category is not None and (m := _CONTROL.match(text)):
            category["entries"].setdefault(m.group(1), m.group(2) or "")
    return annexes


def cn_code(text: str) -> str:
    """A CN code as the Combined Nomenclature prints it (``8542 31``, ``8807 30 00``), or ''."""
    m = _CN.match(text.replace("\xa0", " ").strip())
    return " ".join(part for part in m.groups() if part) if m else ""


def _title_case(text: str) -> str:
    text = clean_text(text)
    return text[:1].upper() + text[1:].lower() if text.isupper() else text


def celex_of(url: str) -> str:
    """The CELEX number of a EUR-Lex URI-server link (``?uri=CELEX:32014R0833``), else ''."""
    uri = (parse_qs(urlsplit(url).query).get("uri") or [""])[0]
    return uri.split(":", 1)[1] if uri.upper().startswith("CELEX:") else ""


# -- state kept in the database --------------------------------------------------------------------


def stored_notice(source: str, source_id: str) -> tuple[Any, bytes | None]:
    """The stored notice (a radar.models.Notice) and its raw body, or (None, None) when there is none.

    Spiders that diff snapshots keep their last snapshot as a notice: the database every worker
    shares is then the only state, and each snapshot is versioned and auditable like any notice.
    """
    from sqlmodel import select

    from radar.db import get_engine, session_scope
    from radar.models import Notice
    from radar.store import load_raw

    with session_scope(get_engine()) as session:
        notice = session.exec(select(Notice).where(Notice.source == source, Notice.source_id == source_id)).first()
        if notice is None:
            return None, None
        body = load_raw(session, notice.raw_sha256) if notice.raw_sha256 else None
        session.expunge(notice)
        return notice, body


def iter_records(records: Any, spider: RadarSpider, what: str, url: str) -> Iterator[dict[str, Any]]:
    """The dict records of a JSON list; a list of something else is a layout change, odd members one warning."""
    if not isinstance(records, list):
        spider.report_failure(FAILURE_LAYOUT, "expected a list of %s in %s, got %s", what, url,
                              type(records).__name__)
        return
    odd = 0
    for record in records:
        if isinstance(record, dict):
            yield record
        else:
            odd += 1
    if odd:
        log.warning("%s: %d of the %s in %s are not objects, skipped", spider.name, odd, what, url)
