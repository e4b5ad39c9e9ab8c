"""EU Safety Gate (RAPEX): the weekly-report index, each report's notifications, enriched by the notification JSON."""

from __future__ import annotations

import logging
import re
from datetime import date

import scrapy

from crawlers.base import (FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, clean_text, find_gtin, parse_date,
                           split_labels, unique, xml_fields)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

ROOT = "Safety-Gate"
_ALERT_ID = re.compile(r"/alertDetail/(\d+)")


class EuSafetyGateAlertsSpider(RadarSpider):
    name = "eu_safety_gate_alerts"

    def parse(self, response):
        """The index lists every weekly report since 2005; a run reads the newest ``max_pages`` of them."""
        index = self.load_xml(response, ROOT)
        if index is None:
            return
        reports = []
        for node in index.xpath("/Safety-Gate/weeklyReport"):
            record = xml_fields(node)
            # The URL is used verbatim: without its search parameter the server answers with a JavaScript shell.
            url, reference = record.pop("URL", ""), record.pop("reference", "")
            published = parse_date(record.pop("publicationDate", None)) or date.min
            self.leftovers(record, "weeklyReport")
            if url:
                reports.append((published, reference, url))
        if not reports:
            self.report_failure(FAILURE_EMPTY, "no weekly reports in %s", response.url)
            return
        reports.sort(key=lambda report: report[0], reverse=True)
        for _published, reference, url in reports[: self.source.max_pages]:
            yield scrapy.Request(url, callback=self.parse_report, errback=self.on_error,
                                 cb_kwargs={"report": reference})

    def parse_report(self, response, report: str = ""):
        """One weekly report: one item per notification, via the notification JSON when the alert has an id."""
        sheet = self.load_xml(response, ROOT)
        if sheet is None:
            return
        head = xml_fields(sheet.xpath("/Safety-Gate")[0], "*[not(self::notifications)]")
        published = parse_date(head.pop("report_date", None))
        for key in ("report_year", "report_week"):  # report_date already says when
            head.pop(key, None)
        self.leftovers(head, "report")
        notifications = sheet.xpath("/Safety-Gate/notifications")
        if not notifications:
            self.report_failure(FAILURE_EMPTY, "no notifications in weekly report %s", response.url)
            return
        for node in notifications:
            item = self.parse_notification_xml(response, xml_fields(node), published, report)
            if item is None:
                continue
            alert_id = _ALERT_ID.search(item.url)
            if alert_id:
                url = self.source.urls["notification_api"].format(id=alert_id.group(1))
                yield scrapy.Request(url, callback=self.parse_notification, errback=self.notification_failed,
                                     cb_kwargs={"item": item})
            else:
                yield item

    def parse_notification_xml(self, response, record: dict, published: date | None, report: str) -> NoticeItem | None:
        """One ``<notifications>`` element as a notice; the JSON, when there is one, only adds to it."""
        case = clean_text(record.pop("caseNumber", ""))
        record.pop("order", None)  # position in the weekly report, not part of the notice
        product, name, brand = (clean_text(record.pop(key, "")) for key in ("product", "name", "brand"))
        title = " – ".join(part for part in (product, name, brand) if part)
        if not case or not title:
            log.warning("%s: record %s has no %s, skipped", self.name, case or "?", "title" if case else "caseNumber")
            return None
        reference = clean_text(record.pop("reference", ""))
        keys = ("notifyingCountry", "countryOfOrigin", "description", "danger", "measures", "barcode", "category")
        notifying, origin, description, danger, measures, barcode, category = (
            clean_text(record.pop(k, "")) for k in keys)
        labels = {
            "notifying_country": notifying,
            "origin_country": origin,
            "risk_level": clean_text(record.pop("level", "")),
            "measures": measures,
            "barcode": barcode,
            "company_recall_code": clean_text(record.pop("companyRecallCode", "")),
            "company_recall_page": clean_text(record.pop("URLrecall", "")),
            "production_dates": clean_text(record.pop("productionDates", "")),
            "weekly_report": report,
        }
        item = self.make_item(
            response,
            source_id=case,
            url=reference if _ALERT_ID.search(reference) else response.url,
            title=title,
            text="\n\n".join(part for part in (description, danger, measures) if part),
            published=published,
            product_name=name or product,
            brand=brand or None,
            model=clean_text(record.pop("type_numberOfModel", "")) or None,
            gtin=find_gtin(barcode),
            batch=clean_text(record.pop("batchNumber", "")) or None,
            # One category per alert, and category names contain commas ("Adaptors, Plugs and Sockets").
            category_labels=[category] if category else [],
            risk_labels=split_labels(record.pop("riskType", "")),
            country_labels=unique((notifying, origin)),
            labels={k: v for k, v in labels.items() if v},
        )
        self.leftovers(record, "notifications")
        return item

    def parse_notification(self, response, item: NoticeItem):
        """Adds what only the JSON has: the countries that reacted, the last change, sale online, measure types."""
        record = self.load_json(response)
        if isinstance(record, dict):
            # The weekly report already carried these, in another shape.
            for key in ("id", "reference", "publicationDate", "country", "risk"):
                record.pop(key, None)
            counterfeit = _name((record.pop("product", None) or {}).get("isCounterfeit"))
            reacting = [_name(r.get("country")) for r in record.pop("reactingCountries", None) or []
                        if isinstance(r, dict)]
            measures = (record.pop("measureTaken", None) or {}).get("measures") or []
            extra = {
                "reacting_countries": [c for c in reacting if c],
                "measure_types": unique(_name(m.get("measureType")) for m in measures),
                "sold_online": _name((record.pop("traceability", None) or {}).get("isSoldOnline")),
                "counterfeit": counterfeit,
                "notification_type": _name(record.pop("notificationType", None)),
            }
            item.updated = parse_date(record.pop("modificationDate", None))
            item.labels.update({k: v for k, v in extra.items() if v})
            item.country_labels = unique([*item.country_labels, *extra["reacting_countries"]])
            self.leftovers(record, "notification")
        elif record is not None:
            self.report_failure(FAILURE_LAYOUT, "no notification object in %s", response.url)
        yield item  # the weekly report alone is a complete notice

    def notification_failed(self, failure):
        self.on_error(failure)
        yield failure.request.cb_kwargs["item"]



def _name(value) -> str:
    """The display name of a Safety Gate enum object ({"key": ..., "name": ...}), its key if it has no name."""
    return clean_text(value.get("name") or value.get("key")) if isinstance(value, dict) else ""

