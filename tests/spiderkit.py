"""What the spider tests share: the demo samples by URL, a crawl through them, and the warnings logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import scrapy
from scrapy.http import Response

from crawlers.middleware import mirror_url
from radar.sampleserver import SAMPLES_DIR, sample_file

SAMPLES = SAMPLES_DIR
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def sample_path(url: str) -> Path:
    """The demo file the sample server answers this URL with (its plain path when there is none, for the assert)."""
    local = mirror_url(url, "")
    return sample_file(SAMPLES, local) or SAMPLES / local.split("?", 1)[0].lstrip("/")


def crawl(spider, respond: Callable[[scrapy.Request, Path], Response]):
    """Follow every request the spider makes through the demo samples; return the items and the URLs fetched."""
    queue, items, fetched = list(spider.start_requests_list()), [], []
    while queue:
        request = queue.pop(0)
        fetched.append(request.url)
        path = sample_path(request.url)
        assert path.is_file(), f"no demo sample for {request.url}"
        for output in request.callback(respond(request, path), **request.cb_kwargs) or ():
            (queue if isinstance(output, scrapy.Request) else items).append(output)
    return items, fetched


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
