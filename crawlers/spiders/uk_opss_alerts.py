"""UK OPSS product safety alerts, reports and recalls: the GOV.UK finder feed, then each notice's Content API JSON."""

from __future__ import annotations

import logging
import re
from urllib.parse import urljoin, urlparse

import scrapy
from parsel import Selector

from crawlers.base import FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, clean_text, find_gtin, parse_date

log = logging.getLogger(__name__)

FINDER_PATH = "/product-safety-alerts-reports-recalls/"
DOCUMENT_TYPE = "product_safety_alert_report_recall"
# GOV.UK publishing plumbing: on every content item, says nothing about the product or the hazard.
_PLUMBING = ("analytics_identifier", "phase", "publishing_app", "publishing_request_id", "publishing_scheduled_at",
             "rendering_app", "scheduled_publishing_delay_seconds", "schema_name", "updated_at")
_DETAILS_PLUMBING = ("change_history", "headers", "max_cache_time", "temporary_update_type")
# Rows of the product-identifiers table OPSS puts in each notice body, by lower-cased label.
_ID_ROWS = {"product": "product_name", "product name": "product_name", "brand": "brand", "brand name": "brand",
            "model": "model", "model number": "model", "barcode": "gtin", "batch number": "batch",
            "country of origin": "origin"}
_PSD_REF = re.compile(r"\((\d{4}-\d{4})\)\s*$")


class UkOpssAlertsSpider(RadarSpider):
    name = "uk_opss_alerts"

    def parse(self, response):
        """The finder feed lists the latest notices; each one's full record comes from the Content API."""
        feed = self.load_xml(response, "feed")
        if feed is None:
            return
        entries = feed.xpath("/feed/entry")
        if not entries:
            self.report_failure(FAILURE_EMPTY, "no entries in feed %s", response.url)
            return
        api = self.source.urls["content_api"].rstrip("/")
        for entry in entries:
            record = {}
            for child in entry.xpath("*"):
                if child.root.tag != "link":
                    record[child.root.tag] = child.xpath("string()").get("")
                elif child.attrib.get("rel", "alternate") == "alternate":
                    record["link"] = child.attrib.get("href", "")
            link, entry_id = record.pop("link", ""), record.pop("id", "")
            # The Content API repeats these with more detail: the feed is only the listing.
            for key in ("title", "summary", "updated"):
                record.pop(key, None)
            self.leftovers(record, "feed.entry")
            path = urlparse(link).path
            if not path.startswith(FINDER_PATH) or path == FINDER_PATH:
                log.warning("%s: feed entry %s links to %r, not to a notice; skipped", self.name, entry_id, link)
                continue
            yield scrapy.Request(api + path, callback=self.parse_notice, errback=self.on_error,
                                 cb_kwargs={"page_url": link})

    def parse_notice(self, response, page_url: str):
        """One content item; its labels are read through the finder vocabulary linked in the same response."""
        record = self.load_json(response)
        if record is None:
            return
        if not isinstance(record, dict) or not isinstance(record.get("details"), dict):
            self.report_failure(FAILURE_LAYOUT, "no content item with details in %s", response.url)
            return
        base_path = record.pop("base_path", "")
        source_id = record.pop("content_id", None) or base_path or page_url
        document_type = record.pop("document_type", None)
        if document_type != DOCUMENT_TYPE:
            log.warning("%s: record %s is a %s, not a %s; skipped", self.name, source_id, document_type, DOCUMENT_TYPE)
            return
        title = clean_text(record.pop("title", ""))
        if not title:
            log.warning("%s: record %s has no title, skipped", self.name, source_id)
            return
        details = record.pop("details")
        body = details.pop("body", "") or ""
        metadata = details.pop("metadata", None) or {}
        facets = _facet_labels(record.pop("links", None) or {})

        def labelled(key: str) -> list[str]:
            """Facet values as the finder shows them ("toys" → "Toys"), the slug itself if unlisted."""
            values = metadata.pop(key, None) or []
            return [facets.get(key, {}).get(v, v) for v in ([values] if isinstance(values, str) else values)]

        ids = _identifiers(body)
        withdrawn = record.pop("withdrawn_notice", None) or {}
        labels = {
            "alert_type": ", ".join(labelled("product_alert_type")),
            "measure_types": labelled("product_measure_type"),
            "recall_alert_date": str(parse_date(metadata.pop("product_recall_alert_date", None)) or ""),
            "psd_reference": (m.group(1) if (m := _PSD_REF.search(title)) else ""),
            "origin_countries": [ids["origin"]] if ids.get("origin") else [],
            "withdrawn": clean_text(withdrawn.get("explanation")) if withdrawn else "",
        }
        metadata.pop("bulk_published", None)  # a publishing flag, not notice content
        item = self.make_item(
            response,
            source_id=source_id,
            url=urljoin(page_url, base_path) if base_path else page_url,
            title=title,
            text="\n\n".join(p for p in (clean_text(record.pop("description", "")), clean_text(body)) if p),
            published=parse_date(record.pop("first_published_at", None)),
            updated=parse_date(record.pop("public_updated_at", None)),
            language=record.pop("locale", None),
            product_name=ids.get("product_name"),
            brand=ids.get("brand"),
            model=ids.get("model"),
            gtin=find_gtin(ids.get("gtin")),
            batch=ids.get("batch"),
            category_labels=labelled("product_category"),
            risk_labels=labelled("product_risk_level"),
            country_labels=list(labels["origin_countries"]),
            labels={k: v for k, v in labels.items() if v},
        )
        for key in _PLUMBING:
            record.pop(key, None)
        for key in _DETAILS_PLUMBING:
            details.pop(key, None)
        self.leftovers(record, "content")
        self.leftovers(details, "details")
        self.leftovers(metadata, "details.metadata")
        yield item


def _facet_labels(links: dict) -> dict[str, dict[str, str]]:
    """Value → label per facet key, from the finder the notice links to: the source's own vocabulary."""
    out: dict[str, dict[str, str]] = {}
    for finder in links.get("finder") or []:
        for facet in (finder.get("details") or {}).get("facets") or []:
            out[facet.get("key")] = {v.get("value"): v.get("label") for v in facet.get("allowed_values") or []}
    return out


def _identifiers(body: str) -> dict[str, str]:
    """Product name, brand, model, barcode, batch and origin from the two-column table in the notice body."""
    rows: dict[str, str] = {}
    if not body.strip():
        return rows
    for row in Selector(text=body).xpath("//tr"):
        cells = [clean_text(cell) for cell in row.xpath("./th|./td").getall()]
        key = _ID_ROWS.get(cells[0].lower().rstrip(":")) if len(cells) == 2 else None
        if key and cells[1] and cells[1].lower() not in ("unknown", "not known", "n/a", "none"):
            rows.setdefault(key, cells[1])
    return rows

