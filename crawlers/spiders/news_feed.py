"""News feeds: every ``kind: news`` source with ``format: rss`` or ``atom``, each article read from its page.

One generic spider serves them all. A news feed differs from another only by its URL and metadata, so its
spider is data: for each such YAML file in the sources folder this module defines a subclass named after
it, which Scrapy's SpiderLoader finds by name like any spider. Adding a news feed is therefore adding a YAML
file, nothing else. A feed that needs its own code gets ``crawlers/spiders/<name>.py`` as usual, and then no
class is generated for it.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urldefrag

import scrapy

from crawlers.base import FAILURE_ERROR_BODY, FAILURE_JS_SHELL, FAILURE_LAYOUT, RadarSpider, clean_text
from crawlers.feeds import (allowed_hosts, drop_plumbing, entry_date, extract_article, feed_text, follow_redirects,
                            guarded_request, host_allowed, load_feed, tag_terms)
from crawlers.items import NoticeItem
from crawlers.sources import SourceConfig, SourceKind, load_sources
from radar.errors import ConfigError

log = logging.getLogger(__name__)

FEED_FORMATS = ("rss", "atom")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.S)
_ERROR_WORDS = ("page not found", "not found", "error 404", "404", "access denied", "service unavailable",
                "temporarily unavailable", "an error occurred")


class NewsFeedSpider(RadarSpider):
    """The feed gives the list, the date and the link; the article page gives the text. No name: not a source."""

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        yield guarded_request(self.source.url, self.parse, errback=self.on_error)

    @follow_redirects
    def parse(self, response):
        feed = load_feed(self, response)
        if feed is None:
            return
        language = (feed.feed.get("language") or "")[:2].lower() or None
        hosts = allowed_hosts(self)
        for entry in feed.entries[: self.source.bounds.max_records]:
            item = self.parse_entry(response, entry, language)
            if item is None:
                continue
            if host_allowed(item.url, hosts):
                yield guarded_request(item.url, self.parse_article, errback=self.article_failed,
                                      cb_kwargs={"item": item})
            else:
                # Articles elsewhere are not fetched: the source's YAML lists the hosts it may be read from.
                log.info("%s: %s is not on %s; kept the feed's summary", self.name, item.url,
                         ", ".join(hosts))
                yield item

    def parse_entry(self, response, entry: dict[str, Any], language: str | None) -> NoticeItem | None:
        """The notice as the feed alone tells it; the article page, when read, replaces its text."""
        link = (entry.pop("link", "") or "").strip()
        identifier = (entry.pop("id", "") or "").strip() or link
        if identifier.startswith(("http://", "https://")):
            # GOV.UK appends the update time as a fragment: the same page edited keeps its identity.
            identifier = urldefrag(identifier)[0]
        title = clean_text(entry.pop("title", ""))
        if not identifier or not title or not link.startswith(("http://", "https://")):
            log.warning("%s: entry %s has no %s, skipped", self.name, identifier or "?",
                        "title" if identifier and not title else "link")
            return None
        content = " ".join(c.get("value", "") for c in entry.pop("content", None) or [] if isinstance(c, dict))
        summary = feed_text(entry.pop("summary", ""))
        author = clean_text(entry.pop("author", ""))
        item = self.make_item(
            response,
            source_id=identifier,
            url=link,
            title=title,
            text=clean_text(content) or summary or title,
            published=entry_date(entry, "published", "updated", "created"),
            updated=entry_date(entry, "updated"),
            language=language,
            category_labels=tag_terms(entry),
            labels={k: v for k, v in {"author": author, "feed_summary": summary, "text_from": "feed"}.items() if v},
        )
        for key in ("published", "updated", "created"):
            entry.pop(key, None)
        drop_plumbing(entry)
        self.leftovers(entry, "entry")
        return item

    @follow_redirects
    def parse_article(self, response, item: NoticeItem):
        content_type = (response.headers.get("Content-Type") or b"").decode("latin-1").lower()
        if content_type and not content_type.startswith(_HTML_TYPES):
            log.info("%s: %s is %s, not a page; kept the feed's text", self.name, response.url, content_type)
            yield item
            return
        # Decoded here rather than by trafilatura: its guess reads a mislabelled Windows-1252 "£" as "Ł".
        html = self.decode_body(response, declared=getattr(response, "encoding", None))
        article = extract_article(html, response.url) if html.strip() else None
        failure = _article_failure(article, response.body)
        if failure:
            self.report_failure(failure, "no article text in %s; kept the feed's text", response.url)
            yield item
            return
        item.text = article.text
        item.published = item.published or article.published
        item.language = article.language or item.language
        item.raw_body = response.body
        item.raw_content_type = content_type
        extra = {"text_from": "article", "sitename": article.sitename, "article_author": article.author,
                 "article_categories": article.categories}
        item.labels.update({k: v for k, v in extra.items() if v})
        yield item

    def on_offsite(self, response, target: str, item: NoticeItem | None = None):
        """An article redirected off the source's hosts: the feed's own text is still the notice."""
        if item is not None:
            yield item

    def article_failed(self, failure):
        self.on_error(failure)
        yield failure.request.cb_kwargs["item"]


def _article_failure(article, body: bytes) -> str | None:
    """The known failure an article page is (an error page, a script shell, a layout with no text), or None."""
    lowered = body[:200_000].lower()
    page_title = clean_text(m.group(1).decode("utf-8", "replace")) if (m := _TITLE.search(lowered)) else ""
    head = f"{page_title} {article.title} {article.text[:200]}" if article else page_title
    if (article is None or len(article.text) < 400) and any(word in head.lower() for word in _ERROR_WORDS):
        return FAILURE_ERROR_BODY
    if article is None:
        return FAILURE_JS_SHELL if b"<script" in lowered or b"enable javascript" in lowered else FAILURE_LAYOUT
    return None


# -- one spider class per news feed YAML ------------------------------------------------------------


def news_sources() -> list[SourceConfig]:
    """The news feeds the generic spider serves: kind news, format rss or atom, and no module of their own."""
    from radar.settings import get_settings

    try:
        sources = load_sources(get_settings().sources_path)
    except ConfigError as exc:
        # The runner loads the same files first and stops with this message; here it only means no news spiders.
        log.error("news feed spiders not defined: %s", exc)
        return []
    return [s for s in sources.values()
            if s.kind == SourceKind.news and s.format in FEED_FORMATS
            and importlib.util.find_spec(f"crawlers.spiders.{s.name}") is None]


def spider_class(name: str) -> type[NewsFeedSpider]:
    """The NewsFeedSpider subclass for one news source, as SpiderLoader finds it in this module."""
    class_name = "".join(part.capitalize() for part in name.split("_")) + "Spider"
    return type(class_name, (NewsFeedSpider,), {"name": name, "__module__": __name__,
                                                "__doc__": f"News feed spider for config/sources/{name}.yml."})


globals().update({cls.__name__: cls for cls in (spider_class(source.name) for source in news_sources())})
