"""Canada recalls and safety alerts: the RSS feeds, then the open-data JSON file, joined on the notice id (NID)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import scrapy
from lxml import etree

from crawlers.base import (FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, clean_text, parse_date, record_bytes, unique,
                           xml_fields)
from crawlers.items import NoticeItem

log = logging.getLogger(__name__)

# Notices updated this long before the file's newest record are yielded. The window is anchored on the
# file, not on today, so a file the publisher stopped rebuilding still yields its last weeks (and the
# unchanged notices cost nothing to store again).
LOOKBACK_DAYS = 63
FEED_PREFIX = "rss_"
# The file holds every notice since 1991 (about 16 MB in 2026, growing): it gets its own size limit, so the
# global one can stay tight for everything else.
FILE_SIZE_LIMIT = {"download_maxsize": 64_000_000, "download_warnsize": 48_000_000}


class CaHcRecallsSpider(RadarSpider):
    name = "ca_hc_recalls"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        feeds = [(key[len(FEED_PREFIX):], url) for key, url in self.source.urls.items() if key.startswith(FEED_PREFIX)]
        yield self.next_request({"feeds": feeds, "entries": {}})

    def next_request(self, state: dict[str, Any]) -> scrapy.Request:
        """The feeds one after the other, then the file: its callback needs what the feeds said."""
        if state["feeds"]:
            feed, url = state["feeds"].pop(0)
            return scrapy.Request(url, callback=self.parse_feed, errback=self.feed_failed,
                                  cb_kwargs={"state": state, "feed": feed})
        return scrapy.Request(self.source.url, callback=self.parse, errback=self.file_failed, cb_kwargs={"state": state},
                              meta=dict(FILE_SIZE_LIMIT))

    def parse_feed(self, response, state: dict[str, Any], feed: str = ""):
        channel = self.load_xml(response, "rss")
        nodes = channel.xpath("/rss/channel/item") if channel is not None else []
        if channel is not None and not nodes:
            self.report_failure(FAILURE_EMPTY, "no items in feed %s", response.url)
        for node in nodes:
            record = xml_fields(node)
            guid, link = clean_text(record.pop("guid", "")), clean_text(record.pop("link", ""))
            nid = guid.split(" at ", 1)[0] if guid else ""  # Drupal's guid: "<node id> at <site>"
            title = clean_text(record.pop("title", ""))
            if not nid or not title:
                log.warning("%s: feed item %s has no %s, skipped", self.name, nid or link or "?",
                            "title" if nid else "guid")
                continue
            entry = state["entries"].setdefault(nid, {"feeds": []})
            entry.update(title=title, url=link, text=clean_text(record.pop("description", "")),
                         published=parse_date(record.pop("pubDate", None)),
                         organization=clean_text(record.pop("creator", "")),
                         raw=etree.tostring(node.root, encoding="utf-8"))
            entry["feeds"].append(feed)
            self.leftovers(record, "feed.item")
        yield self.next_request(state)

    def feed_failed(self, failure):
        self.on_error(failure)
        yield self.next_request(failure.request.cb_kwargs["state"])

    def parse(self, response, state: dict[str, Any] | None = None):
        entries = (state or {}).get("entries", {})
        records = self.load_json(response)
        if isinstance(records, list):
            notices = [r for r in records if isinstance(r, dict) and r.get("NID")]
            if not notices:
                self.report_failure(FAILURE_LAYOUT if records else FAILURE_EMPTY, "no notices (NID) in %s", response.url)
            dated = [(parse_date(r.get("Last updated")), r) for r in notices]
            newest = max((d for d, _ in dated if d), default=None)
            for updated, record in dated:
                if newest and updated and updated >= newest - timedelta(days=LOOKBACK_DAYS):
                    entries.pop(str(record.get("NID")), None)  # the file's record says more than the feed's item
                    item = self.parse_notice(record, updated)
                    if item is not None:
                        yield item
        elif records is not None:
            self.report_failure(FAILURE_LAYOUT, "expected a JSON array of notices from %s, got %s",
                                response.url, type(records).__name__)
        yield from self.feed_only_items(entries)

    def file_failed(self, failure):
        self.on_error(failure)
        yield from self.feed_only_items(failure.request.cb_kwargs["state"]["entries"])

    def parse_notice(self, record: dict[str, Any], updated: date) -> NoticeItem | None:
        raw = record_bytes(record)
        nid, title = clean_text(record.pop("NID", "")), clean_text(record.pop("Title", ""))
        if not nid or not title:
            log.warning("%s: record %s has no %s, skipped", self.name, nid or "?", "title" if nid else "NID")
            return None
        product, issue, todo = (clean_text(record.pop(k, "")) for k in ("Product", "Issue", "What you should do"))
        labels = {
            "organization": clean_text(record.pop("Organization", "")),
            "recall_class": clean_text(record.pop("Recall class", "")),
            "archived": "yes" if str(record.pop("Archived", "")).strip() == "1" else "",
        }
        record.pop("Last updated", None)
        item = self.make_item(
            None,
            source_id=nid,
            url=clean_text(record.pop("URL", "")),
            title=title,
            text="\n\n".join(p for p in (f"Product: {product}" if product else "", f"Issue: {issue}" if issue else "",
                                         f"What you should do: {todo}" if todo else "") if p),
            # The file only dates the last change. The feeds date publication, but only while they list the
            # notice: taking it from them would change the notice each time it drops off a feed.
            updated=updated,
            product_name=product or None,
            category_labels=unique([clean_text(record.pop("Category", ""))]),
            risk_labels=unique([issue]),
            labels={k: v for k, v in labels.items() if v},
            raw_body=raw,
            raw_content_type="application/json",
        )
        self.leftovers(record, "notice")
        return item

    def feed_only_items(self, entries: dict[str, dict[str, Any]]) -> Iterable[NoticeItem]:
        """Notices the feeds list and the file does not have yet (published since it was built)."""
        for nid, entry in entries.items():
            yield self.make_item(
                None, source_id=nid, url=entry["url"], title=entry["title"], text=entry["text"],
                published=entry["published"],
                labels={k: v for k, v in (("organization", entry["organization"]), ("feeds", entry["feeds"])) if v},
                raw_body=entry["raw"], raw_content_type="application/rss+xml")
        entries.clear()
