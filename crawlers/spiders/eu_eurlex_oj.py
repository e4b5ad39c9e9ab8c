"""EUR-Lex predefined RSS feeds: acts of the Official Journal L and C series, and Commission legislative proposals."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import scrapy

from crawlers.base import RadarSpider, clean_text, parse_date
from crawlers.feeds import (drop_plumbing, entry_date, feed_text, follow_redirects, guarded_request, load_feed,
                            tag_terms)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

# The entry point is the OJ L feed; the YAML's further ``urls`` are the other feeds, by series name.
MAIN_FEED = "oj_l"
_CELEX = re.compile(r"CELEX:([0-9C][0-9A-Z_]{4,}(?:\(\d+\))?)", re.I)
# "OJ L, 2026/2231, 23.11.2026" (act by act, since October 2023) or "OJ L 123, 4.5.2023, p. 1" (before).
_OJ_REF = re.compile(r"\bOJ [LC](?: [A-Z]+)?(?:, \d{4}/\d+, \d{1,2}\.\d{1,2}\.\d{4}"
                     r"| \d+, \d{1,2}\.\d{1,2}\.\d{4}, p\. ?\d+)")
_PROCEDURE = re.compile(r"\b(\d{4}/\d{4}\((?:COD|CNS|APP|NLE|INI|INL|BUD|DEC|RSP)\))")
_DOCUMENT_DATE = re.compile(r"Date of document:?\s*(\d{1,2}/\d{1,2}/\d{4})", re.I)
# CELEX descriptors: sector digit, year, then the document type letter(s). A fixed code list, not source labels.
_CELEX_TYPE = re.compile(r"^([0-9])\d{4}([A-Z]{1,2})")
_ACT_TYPES = {("3", "R"): "Regulation", ("3", "L"): "Directive", ("3", "D"): "Decision", ("3", "H"): "Recommendation",
              ("3", "A"): "Opinion", ("3", "Q"): "Rules of procedure", ("5", "PC"): "Legislative proposal",
              ("5", "DC"): "Commission communication", ("5", "SC"): "Staff working document",
              ("5", "AG"): "Council position", ("5", "AP"): "European Parliament resolution"}


class EuEurlexOjSpider(RadarSpider):
    name = "eu_eurlex_oj"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        for series, url in ((MAIN_FEED, self.source.url), *self.source.urls.items()):
            yield guarded_request(url, self.parse, errback=self.on_error, cb_kwargs={"series": series})

    @follow_redirects
    def parse(self, response, series: str = MAIN_FEED):
        feed = load_feed(self, response)
        if feed is None:
            return
        for entry in feed.entries:
            item = self.parse_entry(response, entry, series)
            if item is not None:
                yield item

    def parse_entry(self, response, entry: dict[str, Any], series: str) -> NoticeItem | None:
        link = (entry.pop("link", "") or "").strip()
        guid = (entry.pop("id", "") or "").strip()
        title = clean_text(entry.pop("title", ""))
        identifier = _identifier(link) or _identifier(guid) or guid or link
        if not identifier or not title:
            log.warning("%s: entry %s has no %s, skipped", self.name, identifier or "?",
                        "title" if identifier else "link")
            return None
        description = feed_text(entry.pop("summary", ""))
        celex = m.group(1).upper() if (m := _CELEX.search(unquote(link + " " + guid))) else ""
        act = _CELEX_TYPE.match(celex)
        labels = {
            "series": series,
            "celex": celex,
            "act_type": _ACT_TYPES.get(act.groups(), "") if act else "",
            "oj_reference": m.group(0) if (m := _OJ_REF.search(description)) else "",
            "procedure": m.group(1) if (m := _PROCEDURE.search(f"{title} {description}")) else "",
            "document_date": str(parse_date(m.group(1)) or "") if (m := _DOCUMENT_DATE.search(description)) else "",
        }
        item = self.make_item(
            response,
            source_id=identifier,
            url=link or response.url,
            title=title,
            text="\n\n".join(part for part in (title, description) if part),
            published=entry_date(entry, "published", "updated"),
            category_labels=tag_terms(entry),
            labels={k: v for k, v in labels.items() if v},
        )
        entry.pop("published", None)
        entry.pop("updated", None)
        drop_plumbing(entry)
        self.leftovers(entry, "item")
        return item


def _identifier(url: str) -> str:
    """The EUR-Lex URI-server identifier in a link (``CELEX:32026R0412``, ``OJ:C_202607311``), else ''."""
    values = parse_qs(urlsplit(url).query).get("uri") if "uri=" in url else None
    return values[0].strip() if values else ""
