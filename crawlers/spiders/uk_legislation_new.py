"""legislation.gov.uk new legislation: the Atom feed of Acts and instruments of all UK nations, as published."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import scrapy
from parsel import Selector

from crawlers.base import RadarSpider, clean_text, parse_date
from crawlers.feeds import (drop_plumbing, entry_date, entry_links, feed_text, follow_redirects, guarded_request,
                            load_feed, next_link)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

TOC_REL = "http://purl.org/dc/terms/tableofcontents"  # feedparser lower-cases rel values
BASE = "https://www.legislation.gov.uk/"


class UkLegislationNewSpider(RadarSpider):
    name = "uk_legislation_new"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        yield guarded_request(self.source.url, self.parse, errback=self.on_error, cb_kwargs={"page": 1})

    @follow_redirects
    def parse(self, response, page: int = 1):
        """One page of 20 entries; ``rel="next"`` leads on, up to ``max_pages``."""
        feed = load_feed(self, response)
        if feed is None:
            return
        for entry in feed.entries:
            item = self.parse_entry(response, entry)
            if item is not None:
                yield item
        following = next_link(feed)
        if following and page < self.source.max_pages:
            yield guarded_request(following, self.parse, errback=self.on_error, cb_kwargs={"page": page + 1})
        elif following:
            log.warning("%s: stopped after %d pages (max_pages); %s not read", self.name, page, following)

    def parse_entry(self, response, entry: dict[str, Any]) -> NoticeItem | None:
        identifier = (entry.pop("id", "") or "").strip()
        # http://www.legislation.gov.uk/id/uksi/2026/1187 → uksi/2026/1187: type, year and number.
        path = urlsplit(identifier).path.removeprefix("/id/").strip("/")
        title, welsh_title = _titles(entry.pop("title", ""), entry.get("title_detail") or {})
        if not path or not title:
            log.warning("%s: entry %s has no %s, skipped", self.name, identifier or "?", "title" if path else "id")
            return None
        links = entry_links(entry)
        contents = next((link["href"] for link in links if link.get("rel") == TOC_REL), "")
        url = (contents or BASE + path).replace("http://", "https://", 1)
        document_type = _value(entry.pop("ukm_documentmaintype", None))
        labels = {
            "document_type": document_type,
            "year": _value(entry.pop("ukm_year", None)),
            "number": _value(entry.pop("ukm_number", None)),
            "isbn": _value(entry.pop("ukm_isbn", None)),
            "welsh_title": welsh_title,
        }
        made = parse_date(_value(entry.pop("ukm_creationdate", None), "date"))
        entry.pop("link", None)
        entry.pop("author", None)  # always "legislation.gov.uk"
        summary = feed_text(entry.pop("summary", ""))
        item = self.make_item(
            response,
            source_id=path,
            url=url,
            title=title,
            text="\n\n".join(part for part in (title, summary) if part),
            published=made or entry_date(entry, "published", "updated"),
            updated=entry_date(entry, "updated"),
            labels={k: v for k, v in labels.items() if v},
        )
        entry.pop("published", None)
        entry.pop("updated", None)
        drop_plumbing(entry)
        self.leftovers(entry, "entry")
        return item


def _titles(title: str, detail: dict[str, Any]) -> tuple[str, str]:
    """English and Welsh titles: a Welsh instrument's title is two xml:lang spans in an XHTML div."""
    if "xhtml" not in (detail.get("type") or "") or "<span" not in title:
        return clean_text(title), ""
    by_language = {}
    for span in Selector(text=f"<div>{title}</div>").xpath("//span"):
        # The HTML parser keeps "xml:lang" as a plain attribute name.
        language = span.root.get("xml:lang") or span.root.get("lang") or ""
        by_language.setdefault(language.lower()[:2], clean_text(span.xpath("string()").get("")))
    return by_language.get("en") or clean_text(title), by_language.get("cy", "")


def _value(element: Any, attribute: str = "value") -> str:
    """The attribute of an empty metadata element (``<ukm:Year Value="2026"/>``) as feedparser keeps it."""
    return clean_text(element.get(attribute, "")) if isinstance(element, dict) else ""
