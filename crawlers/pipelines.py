"""Item pipelines, one job each: validate → dedupe → store. A bad record is dropped with a warning, never stored."""

from __future__ import annotations

import logging
from datetime import date

from scrapy import signals
from scrapy.exceptions import DropItem

from crawlers.base import FAILURE_ROBOTS
from crawlers.items import NoticeItem
from radar.db import get_engine, session_scope
from radar.models import SourceRun, utcnow
from radar.store import StoreResult, store_items

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 200_000  # a notice longer than a book chapter is an extraction error; keep the head, say so
MAX_FIELD_CHARS = 2_000


class _CrawlerPipeline:
    """Scrapy builds pipelines from the crawler; the spider is reached through it."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    @property
    def spider(self):
        return self.crawler.spider


class ValidatePipeline(_CrawlerPipeline):
    """Refuses records a person could not use (no id, no title) and trims what is absurdly long."""

    def process_item(self, item: NoticeItem) -> NoticeItem:
        spider = self.spider
        if not isinstance(item, NoticeItem):
            raise DropItem(f"{spider.name}: not a NoticeItem: {type(item).__name__}")
        record = item.source_id or "(no id)"
        item.source_id = (item.source_id or "").strip()
        item.title = (item.title or "").strip()
        if not item.source_id:
            self._reject(spider, f"{spider.name}: record with title {item.title[:80]!r} has no source id, dropped")
        if not item.title:
            self._reject(spider, f"{spider.name}: record {record} has no title, dropped")
        if len(item.text) > MAX_TEXT_CHARS:
            log.warning("%s: record %s has %d characters of text, kept the first %d", spider.name, record, len(item.text), MAX_TEXT_CHARS)
            item.text = item.text[:MAX_TEXT_CHARS]
        if len(item.title) > MAX_FIELD_CHARS:
            item.title = item.title[:MAX_FIELD_CHARS]
        for name in ("published", "updated", "effective_date", "comment_deadline"):
            value = getattr(item, name)
            if value is not None and not isinstance(value, date):
                log.warning("%s: record %s field %s=%r is not a date, cleared", spider.name, record, name, value)
                setattr(item, name, None)
        return item

    def _reject(self, spider, message: str) -> None:
        spider.crawler.stats.inc_value("radar/rejected")
        log.warning("%s", message)
        raise DropItem(message)


class DedupePipeline(_CrawlerPipeline):
    """Drops a record the same run already yielded unchanged (feeds repeat entries across pages)."""

    def open_spider(self) -> None:
        self._seen: dict[str, str] = {}

    def process_item(self, item: NoticeItem) -> NoticeItem:
        digest = item.content_hash()
        if self._seen.get(item.source_id) == digest:
            raise DropItem(f"{item.source}: record {item.source_id} repeated in this run")
        self._seen[item.source_id] = digest
        return item


class StorePipeline(_CrawlerPipeline):
    """Stores notices in batches and records the run: counts, bytes, errors, and whether it was healthy."""

    batch_size = 200

    @classmethod
    def from_crawler(cls, crawler):
        pipeline = cls(crawler)
        # The run is judged when the spider has closed, once Scrapy knows why it finished.
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def open_spider(self) -> None:
        spider = self.spider
        self._buffer: list[NoticeItem] = []
        self._result = StoreResult()
        self._engine = get_engine()
        with session_scope(self._engine) as session:
            run = SourceRun(source=spider.name)
            session.add(run)
            session.flush()
            self.run_id = run.id
        spider.crawler.stats.set_value("radar/run_id", self.run_id)

    def process_item(self, item: NoticeItem) -> NoticeItem:
        self._buffer.append(item)
        if len(self._buffer) >= self.batch_size:
            self._flush()
        return item

    def _flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        with session_scope(self._engine) as session:
            self._result.add(store_items(session, batch))

    def close_spider(self) -> None:
        try:
            self._flush()
        except Exception as exc:  # a storage failure fails the run; what was committed before stays
            log.exception("%s: storing the last batch failed", self.spider.name)
            self._storage_error = f"storage: {exc}"

    def spider_closed(self, spider, reason: str) -> None:
        stats = self.crawler.stats
        messages: list[str] = list(stats.get_value("radar/errors") or [])
        if getattr(self, "_storage_error", None):
            messages.append(self._storage_error)
        result = self._result
        records = result.new + result.updated + result.unchanged
        bounds = spider.source.bounds
        failed = {k.removeprefix("radar/failure/"): v for k, v in stats.get_stats().items()
                  if k.startswith("radar/failure/") and v}
        failures = sum(failed.values())
        status = "ok"
        if records == 0 and set(failed) == {FAILURE_ROBOTS}:
            # robots.txt forbade every request: the publisher refuses the crawl, as a source whose terms forbid it.
            status = "refused"
        elif records < bounds.min_records or records > bounds.max_records:
            status = "failed"
            messages.append(f"yielded {records} records, a healthy run yields {bounds.min_records}..{bounds.max_records}")
        elif failures or any(m.startswith("storage:") for m in messages):
            status = "partial"
        if reason != "finished":
            status = "failed"
            messages.append(f"crawl ended early: {reason}")
        with session_scope(self._engine) as session:
            run = session.get(SourceRun, self.run_id)
            run.finished_at = utcnow()
            run.status = status
            run.records = records
            run.new, run.updated, run.unchanged = result.new, result.updated, result.unchanged
            run.rejected = int(stats.get_value("radar/rejected") or 0)
            run.bytes = int(stats.get_value("radar/network_bytes") or 0)
            # Scrapy's log_count/ERROR counts every spider of the process, so only this crawler's own
            # failures and callback exceptions are counted here.
            run.errors = failures + sum(v for k, v in stats.get_stats().items() if k.startswith("spider_exceptions/"))
            run.messages = messages[:50]
            session.add(run)
        level = logging.WARNING if status != "ok" else logging.INFO
        log.log(level, "%s: run %s %s: %d records (%d new, %d updated, %d unchanged), %d errors",
                spider.name, self.run_id, status, records, result.new, result.updated, result.unchanged, failures)
