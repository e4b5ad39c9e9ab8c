"""Downloader middleware that serves a crawl from a local mirror (demo, tests) without spiders knowing."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.http import Response

log = logging.getLogger(__name__)


def mirror_url(url: str, mirror: str) -> str:
    """https://host/path?q → <mirror>/host/path?q: the layout of crawlers/samples/ and the sample server."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path or '/'}{query}"


class LocalMirrorMiddleware:
    """With RADAR_MIRROR set, every request goes to the mirror and every response carries the real URL back.

    Spiders, robots.txt handling, offsite checks and stored notice URLs all keep seeing the publisher's
    real addresses; only the bytes come from 127.0.0.1.
    """

    def __init__(self, mirror: str | None) -> None:
        self.mirror = mirror

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.get("RADAR_MIRROR"))

    def process_request(self, request: Request, spider=None):
        if not self.mirror or "radar_original_url" in request.meta:
            return None
        original = request.url
        if original.startswith(self.mirror):
            return None
        rewritten = request.replace(url=mirror_url(original, self.mirror))
        rewritten.meta["radar_original_url"] = original
        # Scrapy sends the new request through the chain again; the meta key stops a second rewrite.
        return rewritten

    def process_response(self, request: Request, response: Response, spider=None):
        original = request.meta.get("radar_original_url")
        if not original:
            return response
        location = response.headers.get("Location")
        if location and location.decode("latin-1").startswith(self.mirror):
            # A redirect inside the mirror points back at the real host so redirect handling stays honest.
            local = location.decode("latin-1")[len(self.mirror.rstrip("/")) + 1:]
            response.headers["Location"] = "https://" + local
        return response.replace(url=original)
