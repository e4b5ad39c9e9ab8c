"""Downloader pieces: a local mirror for the demo and tests, and network byte counts for incremental crawls."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.http import Response

log = logging.getLogger(__name__)


def mirror_url(url: str, mirror: str) -> str:
    """https://host/path?q → <mirror>/host/path?q: the layout of crawlers/samples/ and the sample server."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path or '/'}{query}"


class MirrorDownloadHandler(BaseDownloadHandler):
    """With RADAR_MIRROR set, fetches every http(s) URL from the local mirror instead of the publisher.

    It wraps Scrapy's own HTTP/1.1 handler at the very bottom of the stack, so spiders, robots.txt,
    offsite checks, the HTTP cache, redirects and stored notice URLs all see the publishers' real
    addresses; only the bytes come from 127.0.0.1. Without RADAR_MIRROR it is not installed at all.
    """

    def __init__(self, crawler) -> None:
        super().__init__(crawler)
        from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler

        self.mirror: str = crawler.settings.get("RADAR_MIRROR")
        self._inner = HTTP11DownloadHandler(crawler)

    async def download_request(self, request: Request) -> Response:
        local = request.replace(url=mirror_url(request.url, self.mirror))
        response = await self._inner.download_request(local)
        location = response.headers.get("Location")
        if location and location.decode("latin-1").startswith(self.mirror):
            # A redirect inside the mirror points back at the real host, so redirect handling stays honest.
            response.headers["Location"] = "https://" + location.decode("latin-1")[len(self.mirror.rstrip("/")) + 1:]
        return response.replace(url=request.url, request=request)

    async def close(self) -> None:
        await self._inner.close()


class NetworkStatsMiddleware:
    """Counts the bytes that really crossed the network (a 304 is a few bytes, not the cached body).

    It sits below the HTTP cache (900), so cached bodies replayed by the cache are not counted:
    this is the figure an incremental re-crawl is judged by.
    """

    def __init__(self, stats) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats)

    def process_response(self, request: Request, response: Response, spider=None):
        self.stats.inc_value("radar/network_bytes", len(response.body))
        self.stats.inc_value("radar/network_responses")
        if response.status == 304:
            self.stats.inc_value("radar/not_modified")
        return response
