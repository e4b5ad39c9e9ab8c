"""The generic news feed spider: feeds, article pages read with trafilatura, broken input, redirects and size limits."""

from __future__ import annotations

import logging
import shutil
from datetime import date
from pathlib import Path

import pytest
import scrapy
from scrapy.http import HtmlResponse, TextResponse
from scrapy.settings import Settings as ScrapySettings
from scrapy.spiderloader import SpiderLoader
from scrapy.spidermiddlewares.httperror import HttpError
from sqlmodel import Session, select
from twisted.python.failure import Failure

from conftest import real_data
from crawlers.base import (FAILURE_EMPTY, FAILURE_ENCODING, FAILURE_ERROR_BODY, FAILURE_HTTP_ERROR, FAILURE_JS_SHELL,
                           FAILURE_LAYOUT, FAILURE_MALFORMED, FAILURE_OFFSITE_REDIRECT)
from crawlers.feeds import host_allowed
from crawlers.items import NoticeItem
from spiderkit import SAMPLES, crawl, sample_path, warnings
from crawlers.runner import crawl_subprocess
from crawlers.settings import scrapy_settings
from crawlers.sources import load_sources
from crawlers.spiders import news_feed
from radar.db import get_engine
from radar.models import Notice
from radar.sampleserver import Route, SampleServer
from radar.summary import last_runs

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "news_feed"  # one generic spider: one fixture folder
NEWS = ["uk_opss_news", "us_fda_news", "us_ftc_news", "uk_which_news"]
WHICH_FEED = "https://www.which.co.uk/news/feed"
WHICH_ARTICLE = "https://www.which.co.uk/news/article/magnetic-toys-still-sold-despite-ban-aQ9wE1rT5y"
OPSS_ARTICLE = "https://www.gov.uk/government/news/opss-warns-online-sellers-over-unsafe-e-bike-batteries"
FDA_ARTICLE = ("https://www.fda.gov/news-events/press-announcements/"
               "fda-warns-consumers-not-use-skin-lightening-creams-sold-online-contain-mercury")
BOILERPLATE = ("Cookies on GOV.UK", "Accept additional cookies", "Crown copyright", "Print this page", "Skip to main",
               "Website Policies", "Report Fraud", "Sign up", "Join Which?", "cookie", "Related content")

def make_spider(name: str, **changes):
    source = load_sources()[name]
    return news_feed.spider_class(name)(source=source.model_copy(update=changes) if changes else source)

def respond(url: str, body: bytes, request: scrapy.Request | None = None, status: int = 200,
            content_type: str | None = None, headers: dict | None = None):
    request = request or scrapy.Request(url)
    html = body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))
    content_type = content_type or ("text/html; charset=utf-8" if html else "application/xml")
    cls = HtmlResponse if content_type.startswith("text/html") else TextResponse
    return cls(url=url, body=body, request=request, status=status,
               headers={"Content-Type": content_type, **(headers or {})})

def answer(request, path):
    """How crawl() answers a request: the demo sample for its URL."""
    return respond(request.url, path.read_bytes(), request)

def feed_item(url: str = WHICH_ARTICLE) -> NoticeItem:
    return NoticeItem(source="uk_which_news", source_id=url, url=url, title="Magnetic toys still sold",
                      text="Small, powerful magnets are still easy to buy.", labels={"text_from": "feed"})

def article(spider, url: str, body: bytes, item: NoticeItem | None = None, **kwargs):
    item = item or feed_item(url)
    request = scrapy.Request(url, callback=spider.parse_article, errback=spider.article_failed,
                             cb_kwargs={"item": item})
    return list(spider.parse_article(respond(url, body, request, **kwargs), item=item))

def reported(caplog, name: str, kind: str) -> list[str]:
    return [m for m in warnings(caplog) if m.startswith(f"{name}: {kind}: ")]

# -- one spider per news YAML ----------------------------------------------------------------------

def test_every_news_feed_yaml_gets_a_spider_that_scrapy_finds_by_name():
    loader = SpiderLoader.from_settings(ScrapySettings(scrapy_settings()))
    assert set(NEWS) <= set(loader.list())
    for name in NEWS:
        cls = loader.load(name)
        assert cls.name == name and issubclass(cls, news_feed.NewsFeedSpider) and cls.__module__ == news_feed.__name__
    assert loader.load("us_fda_news").__name__ == "UsFdaNewsSpider"
    assert {s.name for s in news_feed.news_sources()} == set(NEWS)

def test_a_news_feed_is_added_with_a_yaml_file_alone(tmp_path, monkeypatch):
    from radar import settings

    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(SAMPLES.parent.parent / "config/sources/us_ftc_news.yml", sources / "de_bfr_news.yml")
    text = (sources / "de_bfr_news.yml").read_text().replace("juris.us", "juris.eu.de")
    (sources / "de_bfr_news.yml").write_text(text)
    # A news source that has a module of its own keeps it: no class is generated over it.
    own_module = (SAMPLES.parent.parent / "config/sources/us_fr_rules.yml").read_text()
    (sources / "us_fr_rules.yml").write_text(own_module.replace("kind: legislation", "kind: news")
                                             .replace("format: json", "format: rss"))
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(sources))
    settings.get_settings.cache_clear()
    assert [s.name for s in news_feed.news_sources()] == ["de_bfr_news"]
    assert news_feed.spider_class("de_bfr_news").name == "de_bfr_news"

def test_a_broken_sources_folder_defines_no_news_spiders_and_says_why(tmp_path, monkeypatch, caplog):
    from radar import settings

    (tmp_path / "bad_feed_news.yml").write_text("title: [unclosed\n")
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(tmp_path))
    settings.get_settings.cache_clear()
    assert news_feed.news_sources() == []
    assert any("news feed spiders not defined" in m and "bad_feed_news.yml" in m for m in warnings(caplog))

# -- the demo feeds, with their article pages ------------------------------------------------------

@pytest.mark.parametrize("name", NEWS)
def test_demo_feeds_yield_every_article_with_the_text_of_its_page(name, caplog):
    spider = make_spider(name)
    with caplog.at_level(logging.INFO):
        items, fetched = crawl(spider, answer)
    assert len(items) == 3 and len({i.source_id for i in items}) == 3
    assert fetched[0] == spider.source.url and len(fetched) == 4
    for item in items:
        assert item.source == name and item.title and item.published and item.language == "en"
        assert item.labels["text_from"] == "article" and item.raw_body == sample_path(item.url).read_bytes()
        assert item.raw_content_type.startswith("text/html")
        assert len(item.text) > 300 and "<" not in item.text
        assert not [phrase for phrase in BOILERPLATE if phrase in item.text], item.text
    assert warnings(caplog) == []
    assert not [r for r in caplog.records if "is not read by the spider" in r.getMessage()]

def test_article_fields():
    items, _ = crawl(make_spider("uk_opss_news"), answer)
    batteries = next(i for i in items if i.url == OPSS_ARTICLE)
    assert batteries.source_id == OPSS_ARTICLE  # GOV.UK's "#<update time>" is not part of the identity
    assert batteries.title == "OPSS warns online sellers over unsafe e-bike batteries"
    assert batteries.published == date(2026, 11, 19) and batteries.updated == date(2026, 11, 19)
    assert "The Office for Product Safety and Standards (OPSS) has written to 40 sellers" in batteries.text
    assert batteries.text.rstrip().endswith("marketplaces must act when they are not.”")
    assert batteries.labels == {
        "feed_summary": "The Office for Product Safety and Standards has written to 40 online sellers after test "
                        "purchases of e-bike batteries failed fire safety tests.",
        "text_from": "article", "sitename": "GOV.UK"}
    which, _ = crawl(make_spider("uk_which_news"), answer)
    chargers = next(i for i in which if "chargers" in i.url)
    assert chargers.category_labels == ["Technology", "Chargers", "Product safety"]
    assert chargers.labels["author"] == "Which? News team" and chargers.published == date(2026, 11, 13)
    fda, _ = crawl(make_spider("us_fda_news"), answer)
    mercury = next(i for i in fda if i.url == FDA_ARTICLE)
    assert mercury.published == date(2026, 11, 18)  # 15:32 EST is still the 18th in UTC
    assert "import alert 66-38" in mercury.text and "10903 New Hampshire Avenue" not in mercury.text

# -- feeds that are broken, empty, mislabelled or not feeds at all ---------------------------------

BROKEN_FEEDS = [
    ("feed_truncated.xml", FAILURE_MALFORMED, 1),
    ("feed_invalid_entity.xml", FAILURE_MALFORMED, 3),
    ("feed_wrong_encoding.xml", FAILURE_ENCODING, 1),
    ("feed_empty.xml", FAILURE_EMPTY, 0),
    ("feed_error_page.html", FAILURE_ERROR_BODY, 0),
    ("feed_local_path.txt", FAILURE_MALFORMED, 0),
    ("feed_not_a_feed.xml", FAILURE_LAYOUT, 0),
]

@pytest.mark.parametrize("fixture, kind, kept", BROKEN_FEEDS, ids=[f[0] for f in BROKEN_FEEDS])
def test_broken_feeds_are_reported_by_name_and_keep_only_whole_entries(fixture, kind, kept, caplog):
    spider = make_spider("uk_which_news")
    outputs = list(spider.parse(respond(WHICH_FEED, (FIXTURES / fixture).read_bytes())))
    assert all(isinstance(o, scrapy.Request) for o in outputs)  # each entry goes on to its article page
    items = [o.cb_kwargs["item"] for o in outputs]
    assert len(items) == kept
    assert reported(caplog, "uk_which_news", kind), warnings(caplog)
    for item in items:
        assert item.title and item.url.startswith("https://www.which.co.uk/") and "&" not in item.title
        assert "root:" not in item.text

def test_feed_in_the_wrong_encoding_keeps_its_accents():
    body = (FIXTURES / "feed_wrong_encoding.xml").read_bytes()
    [request] = make_spider("uk_which_news").parse(respond(WHICH_FEED, body))
    item = request.cb_kwargs["item"]
    assert item.title == "Rappel de jouets magnétiques dangereux vendus en ligne"
    assert item.text == "Les aimants peuvent être avalés par les enfants." and item.language == "fr"

def test_real_malformed_feed_keeps_every_entry_and_reports_it(caplog):
    body = real_data("us_recallradar_aggregate", "rss-all.xml").read_bytes()
    spider = make_spider("us_fda_news", bounds=load_sources()["us_fda_news"].bounds.model_copy(
        update={"max_records": 100}))
    outputs = list(spider.parse(respond(spider.source.url, body)))
    items = [o.cb_kwargs["item"] if isinstance(o, scrapy.Request) else o for o in outputs]
    assert len(items) == 60 and len({i.source_id for i in items}) == 60
    # Only the articles on the source's own host are fetched; CPSC's are kept with the feed's text.
    assert sum(isinstance(o, scrapy.Request) for o in outputs) == 35
    assert all(o.url.startswith("https://www.fda.gov/") for o in outputs if isinstance(o, scrapy.Request))
    [message] = reported(caplog, "us_fda_news", FAILURE_MALFORMED)
    assert "not well-formed" in message and "kept the 60 entries" in message
    washers = next(i for i in items if i.source_id == "cpsc-10936")
    assert washers.text.endswith('"WORKBLESS", "WB0302" and')  # the entity the generator cut is dropped, not kept
    assert all("&qu" not in i.text and i.published for i in items)

def test_real_feeds_that_parse_cleanly_report_nothing(caplog):
    spider = make_spider("us_fda_news")
    outputs = list(spider.parse(respond(spider.source.url, real_data("us_recallradar_aggregate", "rss-food.xml")
                                        .read_bytes())))
    assert len(outputs) == 50  # the source's max_records bounds what one run takes from a feed
    assert warnings(caplog) == []

# -- article pages ---------------------------------------------------------------------------------

def test_article_in_the_wrong_encoding_is_read_and_reported(caplog):
    spider = make_spider("uk_which_news")
    [item] = article(spider, WHICH_ARTICLE, (FIXTURES / "article_cp1252.html").read_bytes())
    assert "magnetic balls – sold as “fidget” toys for £4.99 –" in item.text
    assert item.labels["text_from"] == "article"
    assert reported(caplog, "uk_which_news", FAILURE_ENCODING)

@pytest.mark.parametrize("fixture, kind", [("article_js_shell.html", FAILURE_JS_SHELL),
                                           ("article_error_page.html", FAILURE_ERROR_BODY)])
def test_article_page_without_text_keeps_the_feed_text(fixture, kind, caplog):
    spider = make_spider("uk_which_news")
    [item] = article(spider, WHICH_ARTICLE, (FIXTURES / fixture).read_bytes())
    assert item.text == "Small, powerful magnets are still easy to buy." and item.labels == {"text_from": "feed"}
    assert reported(caplog, "uk_which_news", kind), warnings(caplog)
    assert not [m for m in warnings(caplog) if "trafilatura" in m or "discarding" in m]

def test_article_link_to_a_document_keeps_the_feed_text_without_a_failure(caplog):
    spider = make_spider("uk_which_news")
    [item] = article(spider, WHICH_ARTICLE, b"%PDF-1.7 ...", content_type="application/pdf")
    assert item.labels == {"text_from": "feed"} and warnings(caplog) == []

def test_article_that_fails_to_download_keeps_the_feed_text(caplog):
    spider = make_spider("uk_which_news")
    item = feed_item()
    request = scrapy.Request(WHICH_ARTICLE, cb_kwargs={"item": item})
    failure = Failure(HttpError(respond(WHICH_ARTICLE, b"gone", request, status=410, content_type="text/plain"), "410"))
    failure.request = request
    assert list(spider.article_failed(failure)) == [item]
    assert reported(caplog, "uk_which_news", FAILURE_HTTP_ERROR) == [
        f"uk_which_news: {FAILURE_HTTP_ERROR}: HTTP 410 from {WHICH_ARTICLE}"]

def test_article_redirected_to_another_site_is_not_followed(caplog):
    spider = make_spider("uk_which_news")
    item = feed_item()
    [kept] = article(spider, WHICH_ARTICLE, b"", item=item, status=302, content_type="text/html",
                     headers={"Location": "https://tracker.example.com/r?to=casino"})
    assert kept is item and item.labels == {"text_from": "feed"}
    [message] = reported(caplog, "uk_which_news", FAILURE_OFFSITE_REDIRECT)
    assert "redirects to https://tracker.example.com/r?to=casino, outside www.which.co.uk; not followed" in message
    hop = article(spider, WHICH_ARTICLE, b"", status=301, content_type="text/html",
                  headers={"Location": "/news/article/magnetic-toys-2"})
    assert [r.url for r in hop] == ["https://www.which.co.uk/news/article/magnetic-toys-2"]
    assert hop[0].callback == spider.parse_article and hop[0].errback == spider.article_failed

def test_feed_entries_linking_to_other_sites_are_kept_without_fetching(caplog):
    spider = make_spider("uk_which_news")
    body = (SAMPLES / "www.which.co.uk/news/feed").read_bytes().replace(
        b"<link>https://www.which.co.uk/news/article/cheap", b"<link>https://press.example.org/news/article/cheap")
    outputs = list(spider.parse(respond(WHICH_FEED, body)))
    kept = [o for o in outputs if isinstance(o, NoticeItem)]
    assert [o.url for o in kept] == [
        "https://press.example.org/news/article/cheap-usb-c-chargers-fail-safety-tests-aB3dE5fG7h"]
    assert kept[0].text == "Nine out of ten unbranded chargers we tested could give an electric shock or start a fire."
    assert sum(isinstance(o, scrapy.Request) for o in outputs) == 2 and warnings(caplog) == []
    assert host_allowed("https://news.which.co.uk/x", ["which.co.uk"])
    assert not host_allowed("https://evilwhich.co.uk/x", ["which.co.uk"]) and host_allowed("https://any.example/", [])

# -- end to end, through a real HTTP server --------------------------------------------------------

FDA_PATH = "/" + FDA_ARTICLE.split("://", 1)[1]
WHICH_PATH = "/" + WHICH_ARTICLE.split("://", 1)[1]

def run(server: SampleServer, env: dict[str, str] | None = None):
    result = crawl_subprocess(NEWS, mirror=server.url, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return last_runs(get_engine())

def test_news_crawl_end_to_end_with_an_offsite_redirect_a_huge_page_and_a_recrawl(sqlite_url):
    engine = get_engine(sqlite_url)
    env = {"RADAR_MAX_RESPONSE_BYTES": "60000"}
    with SampleServer() as server:
        server.add_route(FDA_PATH, Route(status=302, body=b"", content_type="text/html",
                                         headers={"Location": "https://evil.example/landing"}))
        server.add_route(WHICH_PATH, Route(body=(FIXTURES / "article_huge.html").read_bytes(),
                                           content_type="text/html"))
        first = run(server, env)
        second = run(server, env)
        requested = list(server.requests)
    assert {name: first[name].status for name in NEWS} == {
        "uk_opss_news": "ok", "us_ftc_news": "ok", "us_fda_news": "partial", "uk_which_news": "partial"}
    assert all(first[name].records == 3 and first[name].new == 3 for name in NEWS)
    assert any(m.startswith(f"{FAILURE_OFFSITE_REDIRECT}: {FDA_ARTICLE} redirects to https://evil.example/landing")
               for m in first["us_fda_news"].messages), first["us_fda_news"].messages
    assert any(m.startswith(f"{FAILURE_HTTP_ERROR}:") and WHICH_ARTICLE in m for m in first["uk_which_news"].messages)
    assert not [path for path in requested if "evil.example" in path]
    with Session(engine) as session:
        stored = {n.url: n for n in session.exec(select(Notice).where(Notice.source.in_(NEWS))).all()}
    assert len(stored) == 12
    assert stored[FDA_ARTICLE].labels["text_from"] == "feed"  # the notice is kept with the feed's own text
    assert stored[WHICH_ARTICLE].labels["text_from"] == "feed"
    assert stored[OPSS_ARTICLE].labels["text_from"] == "article" and "40 sellers" in stored[OPSS_ARTICLE].text
    assert all(second[name].new == 0 and second[name].unchanged == 3 for name in NEWS)
    first_bytes, second_bytes = sum(first[n].bytes for n in NEWS), sum(second[n].bytes for n in NEWS)
    assert second_bytes < first_bytes * 0.05, (first_bytes, second_bytes)
