"""Crawling across several worker processes or machines: scrapy-redis's shared request queue and duplicate filter.

With the ``redis_url`` setting, a crawl has an id (``<source>-<run id>``) and every worker that joins it
uses the same Redis keys: ``radar:crawl:<id>:<spider>:requests`` (the frontier, a priority queue) and
``radar:crawl:<id>:<spider>:dupefilter`` (fingerprints of every request ever queued in this crawl). A
request is queued only by the worker whose SADD of its fingerprint added it, so each page is fetched
once whichever worker found the link; any idle worker pops it. The keys are per crawl, so tomorrow's
crawl of the same source starts fresh, and they expire a day after the crawl ends.

How work reaches the workers: the scheduler's crawl job announces the crawl in the Redis hash
``radar:crawls`` and runs one worker itself, so a crawl never waits for a worker to exist. Each
`radar worker` process polls that hash and starts a child process joining every crawl it has not joined
yet. A worker's child closes when the shared queue has been empty for ``worker_idle_close`` seconds.

Limits to know (scrapy-redis): requests are stored pickled, so Redis must be reachable by the workers
only; a request a worker had popped but not finished when it was killed is lost for this crawl (its
fingerprint is already in the duplicate filter) and is fetched on the next scheduled crawl.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

ANNOUNCE_KEY = "radar:crawls"
KEY_PREFIX = "radar:crawl"
FINISHED_TTL = 86_400  # seconds the duplicate filter of a finished crawl is kept, for inspection


def queue_key(crawl_id: str) -> str:
    return f"{KEY_PREFIX}:{crawl_id}:%(spider)s:requests"


def dupefilter_key(crawl_id: str) -> str:
    return f"{KEY_PREFIX}:{crawl_id}:%(spider)s:dupefilter"


def _check_crawl_id(crawl_id: str) -> str:
    # scrapy-redis %-formats the key templates (twice), and ids end up in Redis key names.
    if not crawl_id or any(c in crawl_id for c in "% \t\n{}"):
        raise ValueError(f"crawl id {crawl_id!r} must be non-empty, without spaces, braces or %")
    return crawl_id


def redis_scrapy_settings(redis_url: str, crawl_id: str, idle_close: float = 10.0) -> dict[str, Any]:
    """Scrapy settings that put the crawl's frontier and duplicate filter in Redis under the crawl id."""
    _check_crawl_id(crawl_id)
    return {
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_QUEUE_KEY": queue_key(crawl_id),
        "SCHEDULER_DUPEFILTER_KEY": dupefilter_key(crawl_id),
        # Persist: otherwise the first worker to finish would clear the queue and filter under the others.
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_IDLE_BEFORE_CLOSE": 0,
        "REDIS_URL": redis_url,
        "REDIS_PARAMS": {"socket_timeout": 30, "socket_connect_timeout": 10, "retry_on_timeout": True},
        "RADAR_CRAWL_ID": crawl_id,
        "RADAR_WORKER_IDLE_CLOSE": float(idle_close),
        "EXTENSIONS": {"crawlers.distributed.SharedQueueIdle": 500},
    }


class SharedQueueIdle:
    """Keeps a worker open while the shared queue may still get work, and closes it after it stayed empty.

    Scrapy closes a spider as soon as its own scheduler is empty; with a shared queue another worker may
    be about to push the links of the page it is parsing, so a worker waits ``RADAR_WORKER_IDLE_CLOSE``
    seconds of an empty queue first.
    """

    def __init__(self, crawler) -> None:
        from scrapy_redis.connection import get_redis_from_settings

        self.crawler = crawler
        self.idle_close = crawler.settings.getfloat("RADAR_WORKER_IDLE_CLOSE", 10.0)
        self.server = get_redis_from_settings(crawler.settings)
        self.empty_since: float | None = None

    @classmethod
    def from_crawler(cls, crawler):
        from scrapy import signals

        ext = cls(crawler)
        crawler.signals.connect(ext.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def _key(self, setting: str, spider) -> str:
        return self.crawler.settings.get(setting) % {"spider": spider.name}

    def spider_idle(self, spider) -> None:
        from scrapy.exceptions import DontCloseSpider

        # This worker is idle, so only the shared queue (a sorted set: PriorityQueue) can hold work.
        pending = self.server.zcard(self._key("SCHEDULER_QUEUE_KEY", spider))
        now = time.monotonic()
        if pending:
            self.empty_since = None
            raise DontCloseSpider
        if self.empty_since is None:
            self.empty_since = now
        if now - self.empty_since < self.idle_close:
            raise DontCloseSpider

    def spider_closed(self, spider, reason: str) -> None:
        self.server.expire(self._key("SCHEDULER_DUPEFILTER_KEY", spider), FINISHED_TTL)


# -- announcements --------------------------------------------------------------------------------


def _redis(redis_url: str):
    import redis

    return redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)


def announce(redis_url: str, crawl_id: str, sources: Sequence[str], *, mirror: str | None = None,
             ttl: float = 3600) -> None:
    """Tell the `radar worker` processes that a crawl is open for them to join."""
    _check_crawl_id(crawl_id)
    record = {"sources": list(sources), "mirror": mirror, "deadline": time.time() + ttl}
    _redis(redis_url).hset(ANNOUNCE_KEY, crawl_id, json.dumps(record))
    log.info("crawl %s announced to workers (%s)", crawl_id, ", ".join(sources))


def withdraw(redis_url: str, crawl_id: str, *, drop_queue: bool = False) -> None:
    """The crawl is over: no new worker joins; with drop_queue (timeout, abandon) joined workers run dry."""
    client = _redis(redis_url)
    try:
        client.hdel(ANNOUNCE_KEY, crawl_id)
        if drop_queue:
            for key in client.scan_iter(match=f"{KEY_PREFIX}:{crawl_id}:*:requests"):
                client.delete(key)
    except Exception as exc:  # the crawl itself is over; a stale announcement expires by its deadline
        log.warning("withdrawing crawl %s from Redis failed: %s", crawl_id, exc)


def announced(redis_url: str) -> dict[str, dict]:
    """Open crawls by id; announcements past their deadline are removed."""
    client = _redis(redis_url)
    out = {}
    for raw_id, raw in client.hgetall(ANNOUNCE_KEY).items():
        crawl_id = raw_id.decode()
        try:
            record = json.loads(raw)
        except ValueError:
            client.hdel(ANNOUNCE_KEY, crawl_id)
            continue
        if record.get("deadline", 0) < time.time():
            client.hdel(ANNOUNCE_KEY, crawl_id)
            continue
        out[crawl_id] = record
    return out


# -- one worker of one crawl ----------------------------------------------------------------------


def worker_argv(sources: Sequence[str], crawl_id: str, *, mirror: str | None = None,
                spider_modules: Sequence[str] = ()) -> list[str]:
    """The command line of a child process that joins the crawl as one worker."""
    argv = [sys.executable, "-m", "crawlers.distributed", "--crawl-id", crawl_id]
    for name in sources:
        argv += ["--source", name]
    if mirror:
        argv += ["--mirror", mirror]
    for module in spider_modules:
        argv += ["--spider-module", module]
    return argv


def crawl_shared(sources: Sequence[str], crawl_id: str, *, redis_url: str, mirror: str | None = None,
                 idle_close: float = 10.0, spider_modules: Sequence[str] = ()) -> list[str]:
    """Crawl the sources in this process as one worker of the shared crawl ``crawl_id``."""
    from scrapy.core.engine import ExecutionEngine
    from scrapy.crawler import CrawlerProcess
    from scrapy.settings import Settings as ScrapySettings
    from scrapy.spiderloader import SpiderLoader

    from crawlers.runner import select_sources
    from crawlers.settings import scrapy_settings

    selected = select_sources(sources)
    values = scrapy_settings(mirror=mirror)
    values.update(redis_scrapy_settings(redis_url, crawl_id, idle_close))
    if spider_modules:
        values["SPIDER_MODULES"] = list(values["SPIDER_MODULES"]) + list(spider_modules)
    # An idle worker looks at the shared queue on Scrapy's heartbeat (5 s by default); once a second
    # lets it pick up links other workers push without waiting.
    ExecutionEngine._SLOT_HEARTBEAT_INTERVAL = 1.0
    loader = SpiderLoader.from_settings(ScrapySettings(values))
    available = set(loader.list())
    process = CrawlerProcess(settings=values, install_root_handler=False)
    crawled = []
    for source in selected:
        if source.name not in available:
            log.error("%s: no spider for this source, skipped", source.name)
            continue
        process.crawl(loader.load(source.name), source=source)
        crawled.append(source.name)
    if crawled:
        process.start()
    return crawled


def main(argv: Sequence[str] | None = None) -> int:
    from radar.errors import ConfigError
    from radar.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m crawlers.distributed",
                                     description="Join a shared crawl as one worker (see `radar worker`).")
    parser.add_argument("--crawl-id", required=True, help="the crawl to join; every worker of it uses the same id")
    parser.add_argument("--source", action="append", required=True, help="source name; repeat")
    parser.add_argument("--mirror", help="serve every request from this local mirror")
    parser.add_argument("--redis-url", help="default: the redis_url setting")
    parser.add_argument("--idle-close", type=float, help="default: the worker_idle_close setting")
    parser.add_argument("--spider-module", action="append", default=[], help="extra module of spiders")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redis_url = args.redis_url or settings.redis_url
    if not redis_url:
        log.error("no Redis: set RADAR_REDIS_URL (e.g. redis://127.0.0.1:6379/0) or pass --redis-url")
        return 2
    try:
        crawl_shared(args.source, args.crawl_id, redis_url=redis_url, mirror=args.mirror,
                     idle_close=args.idle_close if args.idle_close is not None else float(settings.worker_idle_close),
                     spider_modules=args.spider_module)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return 0


# -- the long-running worker ----------------------------------------------------------------------


class Worker:
    """`radar worker`: joins every announced crawl with a child process, up to ``parallel`` at once."""

    def __init__(self, redis_url: str, *, poll: float = 2.0, parallel: int = 2,
                 spider_modules: Sequence[str] = ()) -> None:
        self.redis_url = redis_url
        self.poll = poll
        self.parallel = parallel
        self.spider_modules = list(spider_modules)
        self.children: dict[str, subprocess.Popen] = {}
        self.joined: set[str] = set()
        self.stopping = threading.Event()

    def run(self, *, max_crawls: int | None = None) -> int:
        """Poll and join until stopped (or until ``max_crawls`` crawls were joined and finished)."""
        log.info("worker up: polling %s every %.1fs for crawls", ANNOUNCE_KEY, self.poll)
        while not self.stopping.is_set():
            self._reap()
            if max_crawls is not None and len(self.joined) >= max_crawls and not self.children:
                break
            try:
                open_crawls = announced(self.redis_url)
            except Exception as exc:  # Redis away for a moment: keep the children, try again
                log.warning("worker: cannot read announcements from Redis: %s", exc)
                open_crawls = {}
            for crawl_id, record in sorted(open_crawls.items()):
                if crawl_id in self.joined or len(self.children) >= self.parallel:
                    continue
                self.joined.add(crawl_id)
                argv = worker_argv(record["sources"], crawl_id, mirror=record.get("mirror"),
                                   spider_modules=self.spider_modules)
                env = dict(os.environ, RADAR_REDIS_URL=self.redis_url)
                self.children[crawl_id] = subprocess.Popen(argv, env=env, start_new_session=True)
                log.info("joined crawl %s (%s) as pid %d", crawl_id, ", ".join(record["sources"]),
                         self.children[crawl_id].pid)
            self.stopping.wait(self.poll)
        self.stop_children()
        return 0

    def _reap(self) -> None:
        for crawl_id, proc in list(self.children.items()):
            if proc.poll() is not None:
                log.info("left crawl %s (exit status %d)", crawl_id, proc.returncode)
                del self.children[crawl_id]

    def stop_children(self, grace: float = 10.0) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.children.clear()


if __name__ == "__main__":
    sys.exit(main())
