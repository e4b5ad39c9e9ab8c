"""EU dual-use control list (Annex I of Regulation (EU) 2021/821) and sanctions annexes listing goods by CN code.

The acts are read as EUR-Lex publishes them (the Official Journal's XHTML rendering): the YAML names the act
that last replaced the dual-use list and the acts whose annexes list goods by Combined Nomenclature code. Each
dual-use category and each CN-code annex becomes one notice that keeps the source's own labels (control entry
numbers, CN codes with their descriptions), so the NLP stage can map them to product categories.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import scrapy
from parsel import Selector
from scrapy.http import TextResponse

from crawlers.base import FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, parse_date
from crawlers.feeds import (OjAnnex, celex_of, follow_redirects, guarded_request, oj_annexes, oj_heading,
                            oj_missing_act)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

MAIN_ACT = "dual_use_list"
_ACT_DATE = re.compile(r"\bof (\d{1,2} [A-Z][a-z]+ \d{4})\b")
_ACT_NAME = re.compile(r"^(.*?(?:Regulation|Decision|Directive) \((?:EU|EC|Euratom)\)(?: No)? \d+/\d+)")


class EuTradeDualuseSpider(RadarSpider):
    name = "eu_trade_dualuse"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        for key, url in ((MAIN_ACT, self.source.url), *self.source.urls.items()):
            yield guarded_request(url, self.parse, errback=self.on_error, cb_kwargs={"act_key": key})

    @follow_redirects
    def parse(self, response, act_key: str = MAIN_ACT):
        """One act: its title from the Official Journal heading, then every annex that lists goods."""
        if not response.body.strip():
            self.report_failure(FAILURE_EMPTY, "empty body from %s", response.url)
            return
        text = response.text if isinstance(response, TextResponse) else response.body.decode("utf-8", "replace")
        page = Selector(text=text)
        heading = oj_heading(page)
        if not heading:
            kind, why = oj_missing_act(page, response.body)
            self.report_failure(kind, "%s at %s", why, response.url)
            return
        act = {"title": heading, "name": (m.group(1) if (m := _ACT_NAME.match(heading)) else heading),
               "celex": celex_of(response.url),
               "date": parse_date(m.group(1)) if (m := _ACT_DATE.search(heading)) else None}
        found = 0
        for annex in oj_annexes(page):
            if annex.cn_codes:
                found += 1
                yield self.cn_item(response, act, annex)
            for number, category in annex.categories.items():
                if category["entries"]:
                    found += 1
                    yield self.category_item(response, act, annex, number, category)
        if not found:
            self.report_failure(FAILURE_LAYOUT, "no CN-code table and no dual-use category in the annexes of %s "
                                "(urls.%s, %s)", act["name"], act_key, response.url)

    def cn_item(self, response, act: dict[str, Any], annex: OjAnnex) -> NoticeItem:
        label = f"Annex {annex.number}" if annex.number else "Annex"
        if annex.amends:
            label = f"{label}, amending {annex.amends}"
        return self.make_item(
            response,
            source_id=f"{act['celex'] or act['name']}/annex-{annex.number or 'unnumbered'}",
            url=response.url,
            title=f"{annex.title or label} – {label}, {act['name']}",
            text="\n".join([act["title"], f"{label}: {annex.title}".rstrip(": "),
                            *(f"CN {code}: {description}" for code, description in annex.cn_codes.items())]),
            published=act["date"],
            # The CN descriptions are the source's own product labels; the codes stay beside them in labels.
            category_labels=list(dict.fromkeys(d for d in annex.cn_codes.values() if d)),
            labels={k: v for k, v in {
                "list": "sanctions_cn_codes", "act": act["name"], "celex": act["celex"], "annex": annex.number,
                "annex_title": annex.title, "amends": annex.amends, "cn_codes": annex.cn_codes}.items() if v},
        )

    def category_item(self, response, act: dict[str, Any], annex: OjAnnex, number: str,
                      category: dict[str, Any]) -> NoticeItem:
        entries: dict[str, str] = category["entries"]
        name = category["title"]
        return self.make_item(
            response,
            source_id=f"{act['celex'] or act['name']}/annex-{annex.number or 'I'}/category-{number}",
            url=response.url,
            title=f"Dual-use items, Category {number} – {name} ({act['name']})",
            text="\n".join([act["title"], f"Category {number} – {name}",
                            *(f"{code} {description}".strip() for code, description in entries.items())]),
            published=act["date"],
            category_labels=[name] if name else [],
            labels={"list": "dual_use", "act": act["name"], "celex": act["celex"], "annex": annex.number or "I",
                    "category": number, "control_entries": entries},
        )
