"""US Federal Register: rules and proposed rules of CPSC, FTC, FDA and BIS, from the documents search API."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import scrapy
from w3lib.url import add_or_replace_parameter

from crawlers.base import FAILURE_EMPTY, FAILURE_ERROR_BODY, FAILURE_LAYOUT, RadarSpider, clean_text, parse_date
from crawlers.feeds import follow_redirects, guarded_request, iter_records
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

# Wider than the schedule interval, so a run that failed for weeks is caught up by the next one, and wide
# enough that a proposed rule's comment period (usually 60-75 days) is still open when it is read again.
LOOKBACK_DAYS = 120
SINCE_PARAMETER = "conditions[publication_date][gte]"
# Listing bookkeeping and links to other renderings of the same document: not notice content.
_LISTING_PLUMBING = ("count", "description", "total_pages", "previous_page_url")
_DOCUMENT_PLUMBING = ("json_url", "pdf_url", "public_inspection_pdf_url", "raw_text_url", "full_text_xml_url",
                      "body_html_url", "excerpts")


class UsFrRulesSpider(RadarSpider):
    name = "us_fr_rules"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        since = (date.today() - timedelta(days=LOOKBACK_DAYS)).isoformat()
        url = add_or_replace_parameter(self.source.url, SINCE_PARAMETER, since)
        yield guarded_request(url, self.parse, errback=self.on_error, cb_kwargs={"page": 1})

    @follow_redirects
    def parse(self, response, page: int = 1):
        """One page of search results; the API's own ``next_page_url`` leads on, up to ``max_pages``."""
        data = self.load_json(response)
        if data is None:
            return
        if not isinstance(data, dict):
            self.report_failure(FAILURE_LAYOUT, "expected a JSON object from %s, got %s", response.url,
                                type(data).__name__)
            return
        if data.get("errors"):
            # A bad condition (an agency slug that no longer exists) answers with errors and no results.
            self.report_failure(FAILURE_ERROR_BODY, "%s from %s", clean_text(str(data["errors"]))[:300], response.url)
            return
        if "results" not in data:
            if data.get("count") == 0:
                self.report_failure(FAILURE_EMPTY, "no documents in the last %d days from %s", LOOKBACK_DAYS,
                                    response.url)
            else:
                self.report_failure(FAILURE_LAYOUT, "no results list in %s", response.url)
            return
        records = data.pop("results")
        next_url = data.pop("next_page_url", None)
        for key in _LISTING_PLUMBING:
            data.pop(key, None)
        self.leftovers(data, "listing")
        for record in iter_records(records, self, "documents", response.url):
            item = self.parse_document(response, record)
            if item is not None:
                yield item
        if next_url and page < self.source.max_pages:
            yield guarded_request(next_url, self.parse, errback=self.on_error, cb_kwargs={"page": page + 1})
        elif next_url:
            log.warning("%s: stopped after %d pages (max_pages); %s not read", self.name, page, next_url)

    def parse_document(self, response, record: dict[str, Any]) -> NoticeItem | None:
        number = clean_text(record.pop("document_number", ""))
        title = clean_text(record.pop("title", ""))
        if not number or not title:
            log.warning("%s: record %s has no %s, skipped", self.name, number or "?",
                        "title" if number else "document_number")
            return None
        agencies = [a for a in record.pop("agencies", None) or [] if isinstance(a, dict)]
        # An agency the Federal Register does not know comes with raw_name only.
        agency_names = [clean_text(a.get("name") or a.get("raw_name") or "") for a in agencies]
        cfr = [_cfr(ref) for ref in record.pop("cfr_references", None) or [] if isinstance(ref, dict)]
        action, dates = clean_text(record.pop("action", "")), clean_text(record.pop("dates", ""))
        labels = {
            "document_type": clean_text(record.pop("type", "")),
            "action": action,
            "agencies": [name for name in agency_names if name],
            "agency_slugs": [a["slug"] for a in agencies if a.get("slug")],
            "citation": clean_text(record.pop("citation", "")),
            "cfr_references": [ref for ref in cfr if ref],
            "docket_ids": [clean_text(d) for d in record.pop("docket_ids", None) or [] if d],
            "regulation_id_numbers": [clean_text(r) for r in record.pop("regulation_id_numbers", None) or [] if r],
            "significant": record.pop("significant", None),
        }
        text = [clean_text(record.pop("abstract", "")), f"Action: {action}" if action else "",
                f"Dates: {dates}" if dates else ""]
        item = self.make_item(
            response,
            source_id=number,
            url=clean_text(record.pop("html_url", "")) or f"https://www.federalregister.gov/d/{number}",
            title=title,
            text="\n\n".join(part for part in text if part),
            published=parse_date(record.pop("publication_date", None)),
            effective_date=parse_date(record.pop("effective_on", None)),
            comment_deadline=parse_date(record.pop("comments_close_on", None)),
            # Federal Register topics are the CFR index terms ("Consumer protection", "Toys"): product words.
            category_labels=[t for t in (clean_text(t) for t in record.pop("topics", None) or []) if t],
            country_labels=[],
            labels={k: v for k, v in labels.items() if v not in (None, "", [])},
        )
        for key in _DOCUMENT_PLUMBING:
            record.pop(key, None)
        self.leftovers(record, "document")
        return item


def _cfr(ref: dict[str, Any]) -> str:
    """A CFR reference as lawyers write it: ``16 CFR 1250``."""
    title, part = ref.get("title"), ref.get("part")
    return f"{title} CFR {part}" if title and part else ""
