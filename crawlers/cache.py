"""Conditional re-crawls through Scrapy's own HTTP cache: revalidate every time, never hide a failure."""

from __future__ import annotations

from scrapy.extensions.httpcache import RFC2616Policy
from scrapy.http import Request, Response


class RevalidatingPolicy(RFC2616Policy):
    """RFC 2616 caching that always asks the publisher (If-None-Match / If-Modified-Since).

    Stock RFC2616Policy would serve a heuristically "fresh" copy without asking, and would replay
    the cached copy when the publisher answers 5xx; a radar must see new notices at once and must
    see a failing source as failing. So a cached response is never fresh, and only a 304 makes the
    cached copy valid.
    """

    def is_cached_response_fresh(self, cachedresponse: Response, request: Request) -> bool:
        self._set_conditional_validators(request, cachedresponse)
        return False

    def is_cached_response_valid(self, cachedresponse: Response, response: Response, request: Request) -> bool:
        return response.status == 304
