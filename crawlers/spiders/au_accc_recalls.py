"""Australia ACCC product safety recalls: the Product Safety Australia RSS feed, whose items carry the notice fields."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from lxml import etree
from parsel import Selector

from crawlers.base import (FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, clean_text, find_gtin, parse_date, unique,
                           xml_fields)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

# Each item's description is the Drupal-rendered notice: one <div class="field--name-field-psa-recall-NAME">
# per field, its value in the <div class="field__item"> children.
_FIELD = re.compile(r"\bfield--name-field-psa-recall-([a-z0-9-]+)\b")
# Notice sections in the order the ACCC shows them, with its own headings.
_SECTIONS = (("product-desc", "Product description"), ("product-defects", "What are the defects?"),
             ("hazards", "What are the hazards?"), ("consumer-action", "What should consumers do?"),
             ("ident-features", "Identifying features"))
_LABELS = {"traders": "traders", "sale-dates": "sale_dates", "location-sold": "where_sold",
           "supplier-name": "supplier", "country-id": "country_of_manufacture"}
_PLUMBING = ("image",)  # the product photo: not notice text


class AuAcccRecallsSpider(RadarSpider):
    name = "au_accc_recalls"

    def parse(self, response):
        feed = self.load_xml(response, "rss")
        if feed is None:
            return
        nodes = feed.xpath("/rss/channel/item")
        if not nodes:
            self.report_failure(FAILURE_EMPTY, "no items in feed %s", response.url)
            return
        items = [self.parse_item(node) for node in nodes]
        if not any(item is not None and item.text for item in items):
            # Every description lost its notice fields: the feed changed shape, so yield nothing half-read.
            self.report_failure(FAILURE_LAYOUT, "no recall fields in any of the %d items of %s", len(nodes), response.url)
            return
        for item in items:
            if item is not None:
                yield item

    def parse_item(self, node: Selector) -> NoticeItem | None:
        record = xml_fields(node, multi=("category",))
        title, link = clean_text(record.pop("title", "")), clean_text(record.pop("link", ""))
        guid = clean_text(record.pop("guid", ""))
        # Drupal's guid reads "<node id> at <site>"; the node id is the notice's lasting identifier.
        source_id = guid.split(" at ", 1)[0] if guid else urlsplit(link).path.rstrip("/").rsplit("/", 1)[-1]
        if not source_id or not title:
            log.warning("%s: record %s has no %s, skipped", self.name, source_id or "?", "title" if source_id else "guid")
            return None
        fields, published = _fields(record.pop("description", ""))
        sections = [(heading, fields.pop(key, "")) for key, heading in _SECTIONS]
        labels = {label: fields.pop(key, "") for key, label in _LABELS.items()}
        for key in _PLUMBING:
            fields.pop(key, None)
        origin, brand = labels["country_of_manufacture"], fields.pop("brand", "")
        item = self.make_item(
            None,
            source_id=source_id,
            url=link,
            title=title,
            text="\n\n".join(f"{heading}\n{value}" for heading, value in sections if value),
            published=published or parse_date(record.pop("pubDate", None)),
            product_name=re.split(r"\s+[—–]\s+", title, maxsplit=1)[-1],
            brand=brand or None,
            gtin=find_gtin(dict(sections)["Identifying features"]),
            category_labels=unique(clean_text(c) for c in record.pop("category", [])),
            country_labels=[origin] if origin else [],
            labels={k: v for k, v in labels.items() if v},
            raw_body=etree.tostring(node.root, encoding="utf-8"),
            raw_content_type="application/rss+xml",
        )
        record.pop("pubDate", None)
        record.pop("creator", None)  # always the site itself
        self.leftovers(record, "item")
        self.leftovers(fields, "item.description")
        return item


def _fields(description: str) -> tuple[dict[str, str], object]:
    """The notice's fields (name → clean text of its values) and its publication date, from an item description."""
    fields: dict[str, str] = {}
    published = None
    if not description.strip():
        return fields, published
    for div in Selector(text=description).xpath("//div[contains(@class, 'field--name-field-psa-recall-')]"):
        name = _FIELD.search(div.attrib.get("class", ""))
        if not name or name.group(1) in fields:
            continue
        values = div.xpath("./div[contains(concat(' ', normalize-space(@class), ' '), ' field__item ')]")
        if name.group(1) == "published-date":
            published = parse_date((values.xpath(".//time/@datetime").get() or "")[:10])
        fields[name.group(1)] = "\n".join(unique(clean_text(v.get()) for v in values))
    fields.pop("published-date", None)
    return fields, published
