"""US FDA enforcement reports from openFDA: the food, drug and device endpoints, paged newest first since a date."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import scrapy

from crawlers.base import (FAILURE_EMPTY, FAILURE_ERROR_BODY, FAILURE_HTTP_ERROR, FAILURE_LAYOUT, RadarSpider, as_int,
                           as_list, clean_text, find_gtin, parse_date, record_bytes, unique, week_start)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

# FDA classifies weekly; nine weeks back catches a run that failed for a while and a late reclassification.
LOOKBACK_DAYS = 63
PAGE_SIZE = 100
# An open upper end (openFDA ranges need one) keeps the URL the same all week, so re-crawls can be conditional.
OPEN_END = "20991231"
_UPC = re.compile(r"(?i)\b(?:UPC|GTIN|EAN)s?\b[^0-9]{0,15}(\d[\d -]{6,20}\d)")
_LABELS = ("event_id", "status", "voluntary_mandated", "initial_firm_notification")
# Firm street address: not notice content (city, state and country are kept).
_PLUMBING = ("address_1", "address_2", "postal_code")
_OPENFDA = {"brand_name": "brand_names", "generic_name": "generic_names", "manufacturer_name": "manufacturers",
            "substance_name": "substances", "route": "routes", "pharm_class_epc": "pharm_classes",
            "device_name": "device_names", "medical_specialty_description": "medical_specialties"}
# openFDA's cross-reference identifiers: keys into other FDA databases, not about the recall.
_OPENFDA_IDS = ("application_number", "is_original_packager", "nui", "original_packager_product_ndc", "package_ndc",
                "pharm_class_cs", "pharm_class_moa", "pharm_class_pe", "product_ndc", "rxcui", "spl_id", "spl_set_id",
                "unii", "device_class", "regulation_number", "k_number", "fei_number", "registration_number",
                "device_key")


class UsFdaEnforcementSpider(RadarSpider):
    name = "us_fda_enforcement"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        since = week_start(LOOKBACK_DAYS).strftime("%Y%m%d")
        for endpoint in [self.source.url, *self.source.urls.values()]:
            yield self.page_request(endpoint, since, 0)

    def page_request(self, endpoint: str, since: str, page: int) -> scrapy.Request:
        url = (f"{endpoint}?search=report_date:[{since}+TO+{OPEN_END}]&sort=report_date:desc"
               f"&limit={PAGE_SIZE}&skip={page * PAGE_SIZE}")
        # openFDA answers a search with no match with HTTP 404 and a JSON error: read it, it is not a failure.
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, meta={"handle_httpstatus_list": [404]},
                              cb_kwargs={"endpoint": endpoint, "since": since, "page": page})

    def parse(self, response, endpoint: str = "", since: str = "", page: int = 0):
        if response.status != 200:
            error = _error(response.body)
            if error.get("code") == "NOT_FOUND":
                log.info("%s: no enforcement reports since %s at %s", self.name, since, endpoint)
            else:
                self.report_failure(FAILURE_HTTP_ERROR, "HTTP %s (%s) from %s", response.status,
                                    clean_text(error.get("message")) or "no error message", response.url)
            return
        data = self.load_json(response)
        if data is None:
            return
        if isinstance(data, dict) and data.get("error"):
            message = _error(response.body).get("message") or data["error"]
            self.report_failure(FAILURE_ERROR_BODY, "%s from %s", clean_text(message), response.url)
            return
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            self.report_failure(FAILURE_LAYOUT, "no results list in %s", response.url)
            return
        if not results:
            self.report_failure(FAILURE_EMPTY, "no enforcement reports in %s", response.url)
            return
        endpoint = endpoint or response.url.split("?")[0]
        kind = urlsplit(endpoint).path.strip("/").split("/")[0]
        for record in results:
            item = self.parse_recall(record, kind, endpoint) if isinstance(record, dict) else None
            if item is not None:
                yield item
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        total = as_int((meta.get("results") if isinstance(meta.get("results"), dict) else {}).get("total"))
        unread = total - (page + 1) * PAGE_SIZE
        if unread > 0 and page + 1 < self.source.max_pages:
            yield self.page_request(endpoint, since, page + 1)
        elif unread > 0:
            log.warning("%s: stopped at max_pages=%d of %s, %d of %d reports unread",
                        self.name, self.source.max_pages, endpoint, unread, total)

    def parse_recall(self, record: dict[str, Any], kind: str, endpoint: str) -> NoticeItem | None:
        raw = record_bytes(record)
        number = clean_text(record.pop("recall_number", ""))
        description = clean_text(record.pop("product_description", ""))
        if not number or not description:
            log.warning("%s: record %s has no %s, skipped", self.name, number or "?",
                        "product description" if number else "recall number")
            return None
        firm = clean_text(record.pop("recalling_firm", ""))
        head = _head(description)
        code_info = " ".join(unique(clean_text(record.pop(k, "")) for k in ("code_info", "more_code_info")))
        reason, distribution, quantity = (clean_text(record.pop(k, "")) for k in
                                          ("reason_for_recall", "distribution_pattern", "product_quantity"))
        openfda = record.pop("openfda", None)
        openfda = openfda if isinstance(openfda, dict) else {}
        names = {label: unique(clean_text(v) for v in as_list(openfda.pop(key, None))) for key, label in _OPENFDA.items()}
        upcs = as_list(openfda.pop("upc", None))
        city, state, country = (clean_text(record.pop(k, "")) for k in ("city", "state", "country"))
        labels = {
            "endpoint": kind,
            **{key: clean_text(record.pop(key, "")) for key in _LABELS},
            "recalling_firm": firm,
            "firm_location": ", ".join(p for p in (city, state, country) if p),
            "distribution_pattern": distribution,
            "product_quantity": quantity,
            "code_info": code_info,
            **{key: str(parse_date(record.pop(key, None)) or "") for key in
               ("recall_initiation_date", "center_classification_date", "termination_date")},
            **names,
        }
        text = zip(("Reason for recall", "Product", "Code information", "Distribution", "Quantity"),
                   (reason, description, code_info, distribution, quantity))
        item = self.make_item(
            None,
            source_id=number,
            url=f'{endpoint}?search=recall_number.exact:"{number}"',
            title=f"{firm} recalls {head}" if firm else head,
            text="\n\n".join(f"{heading}: {value}" for heading, value in text if value),
            published=parse_date(record.pop("report_date", None)),
            product_name=head,
            brand=next(iter(names["brand_names"]), None),
            gtin=find_gtin(*_UPC.findall(f"{description} {code_info}"), *upcs),
            batch=code_info if 0 < len(code_info) <= 120 else None,
            category_labels=unique([clean_text(record.pop("product_type", "")),
                                    *as_list(openfda.pop("product_type", None))]),
            risk_labels=unique([clean_text(record.pop("classification", ""))]),
            country_labels=unique([country]),
            labels={k: v for k, v in labels.items() if v},
            raw_body=raw,
            raw_content_type="application/json",
        )
        for key in _PLUMBING:
            record.pop(key, None)
        for key in _OPENFDA_IDS:
            openfda.pop(key, None)
        self.leftovers(record, "result")
        self.leftovers(openfda, "result.openfda")
        return item


def _head(description: str, limit: int = 120) -> str:
    """The product's name: FDA descriptions open with it, then sizes, codes and packaging after commas."""
    head = re.split(r"(?<=[a-z0-9)])[.;](?:\s|$)", description, maxsplit=1)[0]
    first = head.split(", ", 1)[0]
    head = first if len(first) >= 8 else head
    if len(head) > limit:
        head = head[:limit].rsplit(" ", 1)[0]
    return head.rstrip(" ,;:-")


def _error(body: bytes) -> dict:
    """openFDA's error object ({"error": {"code": ..., "message": ...}}), or {} when the body is not one."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}
