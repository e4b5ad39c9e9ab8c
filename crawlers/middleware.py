"""Downloader pieces: a local mirror for the demo and tests, network byte counts for incremental crawls, and
Scrapy's offsite and robots.txt filters made to report what they drop on the run."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.downloadermiddlewares.offsite import OffsiteMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached

from crawlers.base import FAILURE_ROBOTS, DropReported

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


class ReportingOffsiteMiddleware(OffsiteMiddleware):
    """Scrapy's offsite filter, reporting each redirect hop it drops as ``offsite_redirect`` on the run.

    Scrapy only counts such a drop (``offsite/filtered``): a source that moved to another host would just
    yield nothing. A request the spider itself sent elsewhere (a followed link) is dropped unreported, as
    before: that is the filter doing its job, not the source going wrong.
    """

    def process_request(self, request: Request) -> None:
        try:
            super().process_request(request)
        except IgnoreRequest:
            hops = request.meta.get("redirect_urls")
            if not hops:
                raise
            spider = self.crawler.spider  # it has allowed_domains, or nothing would have been dropped
            spider.report_offsite_redirect(hops[-1], request.url, spider.allowed_domains)
            raise DropReported(f"offsite redirect to {request.url}") from None


class ReportingRobotsTxtMiddleware(RobotsTxtMiddleware):
    """Scrapy's robots.txt filter, reporting each request it forbids as ``robots_forbidden`` on the run."""

    def process_request_2(self, rp, request: Request) -> None:
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest:
            url = urlparse_cached(request)
            self.crawler.spider.report_failure(
                FAILURE_ROBOTS, "%s://%s/robots.txt forbids %s; not fetched (if the publisher does not permit "
                "crawling, set crawl_permitted: false and its refusal in the source's YAML)",
                url.scheme, url.netloc, request.url)
            raise DropReported(f"forbidden by robots.txt: {request.url}") from None
