"""US CPSC recalls: the saferproducts.gov Recall REST API, one JSON array of recalls per run."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import scrapy
from w3lib.url import add_or_replace_parameter

from crawlers.base import (FAILURE_EMPTY, FAILURE_ERROR_BODY, FAILURE_LAYOUT, RadarSpider, clean_text, find_gtin,
                           parse_date, unique)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

# Wider than the schedule interval, so a run that failed for a few days is caught up by the next one.
LOOKBACK_DAYS = 90
_FIRMS = (("manufacturers", "Manufacturers"), ("retailers", "Retailers"), ("importers", "Importers"),
          ("distributors", "Distributors"))


class UsCpscRecallsSpider(RadarSpider):
    name = "us_cpsc_recalls"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        # LastPublishDateStart rather than RecallDateStart: a recall CPSC edits after publication is read again.
        since = (date.today() - timedelta(days=LOOKBACK_DAYS)).isoformat()
        url = add_or_replace_parameter(self.source.url, "LastPublishDateStart", since)
        yield scrapy.Request(url, callback=self.parse, errback=self.on_error)

    def parse(self, response):
        records = self.load_json(response)
        if records is None:
            return
        if not isinstance(records, list):
            self.report_failure(FAILURE_LAYOUT, "expected a JSON array of recalls from %s, got %s",
                                response.url, type(records).__name__)
            return
        if not records:
            self.report_failure(FAILURE_EMPTY, "no recalls from %s", response.url)
            return
        first = records[0] if isinstance(records[0], dict) else {}
        # A failed query still answers 200, with one "recall" whose id is 0 and whose title is the error.
        if not first.get("RecallID") and str(first.get("Title") or "").startswith("Error"):
            self.report_failure(FAILURE_ERROR_BODY, "%s from %s", clean_text(first["Title"]), response.url)
            return
        for record in records:
            item = self.parse_recall(response, record) if isinstance(record, dict) else None
            if item is not None:
                yield item

    def parse_recall(self, response, record: dict[str, Any]) -> NoticeItem | None:
        recall_id = record.pop("RecallID", None)
        source_id = clean_text(record.pop("RecallNumber", None) or recall_id)
        title = clean_text(record.pop("Title", ""))
        if not title:
            log.warning("%s: record %s has no title, skipped", self.name, source_id)
            return None
        products = self._rows(record, "Products", "Name", "Description", "Model", "Type", "CategoryID", "NumberOfUnits")
        hazards = self._rows(record, "Hazards", "Name", "HazardType", "HazardTypeID")
        remedies = unique(r["Name"] for r in self._rows(record, "Remedies", "Name"))
        injuries = unique(r["Name"] for r in self._rows(record, "Injuries", "Name"))
        upcs = unique(r["UPC"] for r in self._rows(record, "ProductUPCs", "UPC"))
        countries = unique(r["Country"] for r in self._rows(record, "ManufacturerCountries", "Country"))
        labels = {
            "recall_id": str(recall_id or ""),
            "origin_countries": countries,
            "units": unique(p["NumberOfUnits"] for p in products),
            "upcs": upcs,
            "remedies": remedies,
            "remedy_options": unique(r["Option"] for r in self._rows(record, "RemedyOptions", "Option")),
            "injuries": injuries,
            "in_conjunction_with": unique(r["URL"] for r in self._rows(record, "Inconjunctions", "URL")),
            "sold_at_label": clean_text(record.pop("SoldAtLabel", "")),
            **{role: unique(r["Name"] for r in self._rows(record, key, "Name", "CompanyID")) for role, key in _FIRMS},
        }
        # Product photos and the firm's phone line: not notice content.
        self._rows(record, "Images", "URL")
        record.pop("ConsumerContact", None)
        text = [clean_text(record.pop("Description", ""))]
        text += [f"Hazard: {h['Name']}" for h in hazards if h["Name"]]
        text += [f"Remedy: {r}" for r in remedies] + [f"Incidents/Injuries: {i}" for i in injuries]
        item = self.make_item(
            response,
            source_id=source_id,
            url=clean_text(record.pop("URL", "")) or response.url,
            title=title,
            text="\n\n".join(part for part in text if part),
            published=parse_date(record.pop("RecallDate", None)),
            updated=parse_date(record.pop("LastPublishDate", None)),
            product_name=next((p["Name"] for p in products if p["Name"]), None),
            model=", ".join(unique(p["Model"] for p in products)) or None,
            gtin=find_gtin(*upcs),
            category_labels=unique(p["Type"] for p in products),
            risk_labels=unique(h["HazardType"] for h in hazards),
            country_labels=countries,
            labels={k: v for k, v in labels.items() if v},
        )
        self.leftovers(record, "recall")
        return item

    def _rows(self, record: dict[str, Any], key: str, *fields: str) -> list[dict[str, str]]:
        """A list of sub-records as clean text per field, each field popped and the rest reported as leftovers."""
        rows = []
        for sub in record.pop(key, None) or []:
            if isinstance(sub, dict):
                rows.append({field: clean_text(sub.pop(field, None)) for field in fields})
                self.leftovers(sub, key)
            elif isinstance(sub, str):  # some answers list bare strings (ProductUPCs)
                rows.append({field: clean_text(sub) if field == fields[0] else "" for field in fields})
        return rows

