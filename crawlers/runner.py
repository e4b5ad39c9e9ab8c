"""Run spiders: in this process (the CLI) or in a child process (tests, the scheduler) so a crash stays there."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings as ScrapySettings
from scrapy.spiderloader import SpiderLoader

from crawlers.settings import scrapy_settings
from crawlers.sources import SourceConfig, load_sources
from radar.errors import ConfigError
from radar.settings import get_settings

log = logging.getLogger(__name__)


def select_sources(names: Sequence[str] | None = None) -> list[SourceConfig]:
    """The sources to crawl: the named ones, or every enabled one. An unknown name is a ConfigError."""
    sources = load_sources(get_settings().sources_path)
    if not names:
        return [s for s in sources.values() if s.enabled]
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise ConfigError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(sorted(sources))}")
    return [sources[n] for n in names]


def crawl(names: Sequence[str] | None = None, *, mirror: str | None = None) -> list[str]:
    """Crawl the sources in this process, all at once, and return the names crawled.

    Twisted's reactor runs once per process: call this once, or use crawl_subprocess.
    """
    sources = select_sources(names)
    values = scrapy_settings(mirror=mirror)
    loader = SpiderLoader.from_settings(ScrapySettings(values))
    available = set(loader.list())
    values["LOG_INSTALL_ROOT_HANDLER"] = False  # our own logging configuration stays in charge
    process = CrawlerProcess(settings=values)
    crawled = []
    for source in sources:
        if not source.crawl_permitted:
            _record_refusal(source.name, f"crawling is not permitted by the publisher: {source.refusal or 'see its YAML'}")
            continue
        if source.name not in available:
            _record_refusal(source.name, f"no spider crawlers/spiders/{source.name}.py for config/sources/{source.name}.yml")
            continue
        domains = source.domains()
        kwargs = {"allowed_domains": domains} if domains else {}
        process.crawl(loader.load(source.name), source=source, **kwargs)
        crawled.append(source.name)
    if crawled:
        process.start()
    return crawled


class QuietLibraries(logging.Filter):
    """Scrapy narrates every request and dumps its stats at INFO; our pipelines say what matters.

    A filter on our handlers, because Scrapy resets its loggers' levels whenever a crawler starts.
    """

    NOISY = ("scrapy", "twisted", "py.warnings", "filelock", "alembic")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(self.NOISY)


def _quiet_scrapy() -> None:
    if get_settings().log_level.upper() == "DEBUG":
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, QuietLibraries) for f in handler.filters):
            handler.addFilter(QuietLibraries())


def _record_refusal(name: str, message: str) -> None:
    """A source that is not crawled still gets a run record, so the health page says why."""
    from radar.db import session_scope
    from radar.models import SourceRun, utcnow

    log.error("%s: %s; refused", name, message)
    with session_scope() as session:
        session.add(SourceRun(source=name, status="refused", finished_at=utcnow(), messages=[message]))


def crawl_subprocess(names: Sequence[str] | None = None, *, mirror: str | None = None,
                     env: dict[str, str] | None = None, timeout: float | None = None,
                     capture: bool = True) -> subprocess.CompletedProcess:
    """Crawl in a child Python process, so its crash, hang or reactor cannot reach the caller.

    With capture, the child's log is returned in the result; without, it goes to our stderr.
    """
    argv = [sys.executable, "-m", "crawlers.runner"]
    for name in names or []:
        argv += ["--source", name]
    if mirror:
        argv += ["--mirror", mirror]
    child_env = dict(os.environ)
    child_env.update(env or {})
    if capture:
        return subprocess.run(argv, env=child_env, capture_output=True, text=True, timeout=timeout)
    return subprocess.run(argv, env=child_env, timeout=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawlers.runner", description=__doc__)
    parser.add_argument("--source", action="append", help="source name; repeat; default: every enabled source")
    parser.add_argument("--mirror", help="serve every request from this local mirror, e.g. http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=get_settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_scrapy()
    try:
        crawl(args.source, mirror=args.mirror)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
