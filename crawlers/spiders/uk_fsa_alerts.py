"""UK FSA food alerts: the data.food.gov.uk food-alerts API (full view), with allergen and hazard codes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import scrapy
from w3lib.url import add_or_replace_parameters

from crawlers.base import (FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, as_list, clean_text, parse_date, record_bytes,
                           split_labels, unique, week_start)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

LOOKBACK_DAYS = 63  # alerts created in nine weeks are read again, so a later update to one of them is seen
# The alert types, by the code that ends their type URI: the FSA's own names for them.
ALERT_TYPES = {"AA": "Allergy Alert", "PRIN": "Product Recall Information Notice", "FAFA": "Food Alert For Action"}
# What a problem is about: each kind of problem carries its own coded object (label + notation).
_PROBLEM_CODES = ("allergen", "pathogenRisk", "hazardCategory", "reason")
# Ids, short forms for SMS and social media, and media links: repeat the alert, say nothing new.
_PLUMBING = ("@id", "shortTitle", "SMStext", "twitterText", "shortURL", "relatedMedia")


class UkFsaAlertsSpider(RadarSpider):
    name = "uk_fsa_alerts"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        yield self.page_request(f"{week_start(LOOKBACK_DAYS).isoformat()}T00:00:00Z", 0)

    @property
    def page_size(self) -> int:
        """Alerts per page: the _limit in the YAML URL (the API gives 10 without one)."""
        return int(parse_qs(urlsplit(self.source.url).query).get("_limit", ["10"])[0])

    def page_request(self, since: str, page: int) -> scrapy.Request:
        url = add_or_replace_parameters(self.source.url, {"since": since, "_offset": str(page * self.page_size)})
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, cb_kwargs={"since": since, "page": page})

    def parse(self, response, since: str = "", page: int = 0):
        data = self.load_json(response)
        if data is None:
            return
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            self.report_failure(FAILURE_LAYOUT, "no items list in %s", response.url)
            return
        if not items and page == 0:
            self.report_failure(FAILURE_EMPTY, "no alerts since %s in %s", since, response.url)
            return
        for record in items:
            item = self.parse_alert(record) if isinstance(record, dict) else None
            if item is not None:
                yield item
        if len(items) >= self.page_size and page + 1 < self.source.max_pages:
            yield self.page_request(since, page + 1)
        elif len(items) >= self.page_size:
            log.warning("%s: stopped at max_pages=%d with more alerts since %s", self.name, self.source.max_pages, since)

    def parse_alert(self, record: dict[str, Any]) -> NoticeItem | None:
        raw = record_bytes(record)
        notation, title = clean_text(record.pop("notation", "")), clean_text(record.pop("title", ""))
        if not notation or not title:
            log.warning("%s: record %s has no %s, skipped", self.name, notation or "?", "title" if notation else "notation")
            return None
        types = [t.rstrip("/").rsplit("/", 1)[-1] for t in as_list(record.pop("type", None)) if isinstance(t, str)]
        codes = [t for t in types if t != "Alert"]
        problems = [p for p in as_list(record.pop("problem", None)) if isinstance(p, dict)]
        coded = {key: [c for p in problems for c in as_list(p.get(key)) if isinstance(c, dict)] for key in _PROBLEM_CODES}
        products = [p for p in as_list(record.pop("productDetails", None)) if isinstance(p, dict)]
        batches = [b for p in products for b in as_list(p.get("batchDescription")) if isinstance(b, dict)]
        countries = unique(label for c in as_list(record.pop("country", None)) if isinstance(c, dict)
                           for label in split_labels(as_list(c.get("label"))))
        status = record.pop("status", None) or {}
        others = record.pop("otherBusiness", None)
        labels = {
            "alert_type": [ALERT_TYPES.get(code, code) for code in codes],
            "alert_codes": codes,
            "allergen_codes": unique(clean_text(a.get("notation")) for a in coded["allergen"]),
            "hazard_codes": unique(clean_text(c.get("notation")) for key in _PROBLEM_CODES[1:] for c in coded[key]),
            "reporting_business": clean_text(_common_name(record.pop("reportingBusiness", None))),
            "other_businesses": unique(clean_text(_common_name(b)) for b in as_list(others)),
            "status": clean_text(status.get("label")) if isinstance(status, dict) else "",
            "pack_sizes": unique(clean_text(p.get("packSizeDescription")) for p in products),
            "best_before": unique(clean_text(b.get(k)) for b in batches
                                  for k in ("bestBeforeDescription", "useByDescription")),
        }
        product_lines = [" – ".join(unique([clean_text(p.get("productName")), clean_text(p.get("packSizeDescription")),
                                            *(clean_text(v) for b in as_list(p.get("batchDescription"))
                                              if isinstance(b, dict) for v in b.values()
                                              if isinstance(v, str) and not v.startswith("http"))]))
                         for p in products]
        text = [clean_text(record.pop("description", "")), *unique(clean_text(p.get("riskStatement")) for p in problems),
                *(f"Product: {line}" for line in product_lines if line),
                clean_text(record.pop("actionTaken", "")), clean_text(record.pop("consumerAdvice", ""))]
        item = self.make_item(
            None,
            source_id=notation,
            url=clean_text(record.pop("alertURL", "")) or f"https://www.food.gov.uk/news-alerts/alert/{notation.lower()}",
            title=title,
            text="\n\n".join(unique(text)),
            published=parse_date(record.pop("created", None)),
            updated=parse_date(record.pop("modified", None)),
            product_name=next((clean_text(p.get("productName")) for p in products if p.get("productName")), None),
            batch=", ".join(unique(clean_text(b.get(k)) for b in batches for k in ("batchCode", "lotNumber"))) or None,
            risk_labels=unique(clean_text(c.get("label")) for key in _PROBLEM_CODES for c in coded[key]),
            country_labels=countries,
            labels={k: v for k, v in labels.items() if v},
            raw_body=raw,
            raw_content_type="application/json",
        )
        for key in _PLUMBING:
            record.pop(key, None)
        self.leftovers(record, "alert")
        for problem in problems:
            self.leftovers({k: v for k, v in problem.items() if k not in (*_PROBLEM_CODES, "@id", "riskStatement")},
                           "alert.problem")
        for product in products:
            self.leftovers({k: v for k, v in product.items()
                            if k not in ("@id", "productName", "packSizeDescription", "batchDescription")},
                           "alert.productDetails")
        return item


def _common_name(business: Any) -> str:
    """A business object's commonName (the API also sends a bare name now and then)."""
    return business.get("commonName", "") if isinstance(business, dict) else str(business or "")
