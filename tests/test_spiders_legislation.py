"""Legislation and trade-control spiders: demo samples, broken answers, and end to end through a real server."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import scrapy
from scrapy.http import HtmlResponse, TextResponse
from sqlalchemy import func
from sqlmodel import Session, select

from crawlers.base import (FAILURE_EMPTY, FAILURE_ENCODING, FAILURE_ERROR_BODY, FAILURE_JS_SHELL, FAILURE_LAYOUT,
                           FAILURE_MALFORMED, FAILURE_OFFSITE_REDIRECT)
from crawlers.items import NoticeItem
from spiderkit import FIXTURES, SAMPLES, crawl, sample_path, warnings
from crawlers.runner import crawl_subprocess
from crawlers.sources import load_sources
from crawlers.spiders.eu_eurlex_oj import EuEurlexOjSpider
from crawlers.spiders.eu_trade_dualuse import EuTradeDualuseSpider
from crawlers.spiders.uk_legislation_new import UkLegislationNewSpider
from crawlers.spiders.us_fr_rules import UsFrRulesSpider
from crawlers.spiders.us_trade_csl import UsTradeCslSpider
from radar.db import get_engine, session_scope
from radar.models import Notice, NoticeVersion
from radar.sampleserver import Route, SampleServer
from radar.store import store_items
from radar.summary import last_runs

FR_API = "https://www.federalregister.gov/api/v1/documents.json"
CSL_URL = "https://data.trade.gov/downloadable_consolidated_screening_list/v1/consolidated.json"
CSL_SAMPLE = SAMPLES / "data.trade.gov/downloadable_consolidated_screening_list/v1/consolidated.json"
OJ_L = "https://eur-lex.europa.eu/EN/display-feed.rss?rssId=222"
UK_FEED = "https://www.legislation.gov.uk/new/data.feed"


def make_spider(cls):
    return cls(source=load_sources()[cls.name])


def respond(url: str, body: bytes, request: scrapy.Request | None = None, status: int = 200,
            headers: dict | None = None):
    request = request or scrapy.Request(url)
    kind = HtmlResponse if body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")) else TextResponse
    content_type = "text/html; charset=utf-8" if kind is HtmlResponse else "application/octet-stream"
    return kind(url=url, body=body, request=request, status=status,
                headers={"Content-Type": content_type, **(headers or {})})



def answer(request, path):
    """How crawl() answers a request: the demo sample for its URL."""
    return respond(request.url, path.read_bytes(), request)


def call(spider, callback: str, url: str, body: bytes, **cb_kwargs):
    request = scrapy.Request(url, cb_kwargs=cb_kwargs)
    return list(getattr(spider, callback)(respond(url, body, request), **cb_kwargs) or ())


def reported(caplog, spider, kind: str) -> list[str]:
    return [m for m in warnings(caplog) if m.startswith(f"{spider.name}: {kind}: ")]


# -- every source, on its demo samples -------------------------------------------------------------


def test_sources_are_configured():
    sources = load_sources()
    expected = {"us_fr_rules": ("legislation", "juris.us"), "eu_eurlex_oj": ("legislation", "juris.eu"),
                "uk_legislation_new": ("legislation", "juris.uk"), "us_trade_csl": ("trade_control", "juris.us"),
                "eu_trade_dualuse": ("trade_control", "juris.eu")}
    for name, (kind, jurisdiction) in expected.items():
        source = sources[name]
        assert (source.kind.value, source.jurisdiction) == (kind, jurisdiction)
        assert source.enabled and source.licence and source.attribution


@pytest.mark.parametrize("cls, count", [(UsFrRulesSpider, 8), (EuEurlexOjSpider, 12), (UkLegislationNewSpider, 9),
                                        (UsTradeCslSpider, 1), (EuTradeDualuseSpider, 6)])
def test_demo_samples_yield_every_notice_cleanly(cls, count, caplog):
    spider = make_spider(cls)
    with caplog.at_level(logging.INFO):
        items, fetched = crawl(spider, answer)
    assert len(items) == count
    assert len({item.source_id for item in items}) == count
    for item in items:
        assert isinstance(item, NoticeItem) and item.source == cls.name
        assert item.title and item.text and item.published and item.raw_body
        assert item.url.startswith("https://") and item.language == "en"
        assert "<" not in item.text and "<" not in item.title
    assert all(url.startswith("https://") for url in fetched)
    assert spider.source.bounds.min_records <= count <= spider.source.bounds.max_records
    assert warnings(caplog) == []
    assert not [r for r in caplog.records if "is not read by the spider" in r.getMessage()]


# -- US Federal Register ---------------------------------------------------------------------------


def test_fr_asks_for_documents_published_in_the_last_120_days():
    spider = make_spider(UsFrRulesSpider)
    [request] = spider.start_requests_list()
    since = (date.today() - timedelta(days=120)).isoformat()
    query = unquote(urlsplit(request.url).query)
    assert f"conditions[publication_date][gte]={since}" in query
    assert "conditions[agencies][]=industry-and-security-bureau" in query and "fields[]=comments_close_on" in query
    assert request.cb_kwargs == {"page": 1} and request.meta["dont_redirect"]


def test_fr_document_fields():
    spider = make_spider(UsFrRulesSpider)
    items = call(spider, "parse", FR_API, sample_path(FR_API).read_bytes(), page=1)
    by_id = {item.source_id: item for item in items}
    drones = by_id["2026-22160"]
    assert drones.title == ("Export Administration Regulations: License Requirements for Unmanned Aircraft "
                            "Components and Flight Controllers")
    assert drones.url == ("https://www.federalregister.gov/documents/2026/11/05/2026-22160/export-administration-"
                          "regulations-license-requirements-for-unmanned-aircraft-components-and-flight-controllers")
    assert drones.published == date(2026, 11, 5)
    assert drones.effective_date == date(2026, 11, 20)
    assert drones.comment_deadline == date(2027, 1, 5)
    assert drones.category_labels == ["Exports", "Reporting and recordkeeping requirements"]
    assert drones.labels == {
        "document_type": "Rule",
        "action": "Interim final rule; request for comments.",
        "agencies": ["Commerce Department", "Industry and Security Bureau"],
        "agency_slugs": ["commerce-department", "industry-and-security-bureau"],
        "citation": "91 FR 75988",
        "cfr_references": ["15 CFR 740", "15 CFR 742", "15 CFR 774"],
        "docket_ids": ["BIS-2026-0042"],
        "regulation_id_numbers": ["0694-AK05"],
        "significant": True,
    }
    assert drones.text.startswith("The Bureau of Industry and Security (BIS) amends the Export Administration")
    assert "\n\nAction: Interim final rule; request for comments.\n\nDates: Effective date: This rule" in drones.text
    rockers, batteries = by_id["2026-21877"], by_id["2026-22418"]
    assert (rockers.effective_date, rockers.comment_deadline) == (date(2027, 5, 3), None)
    assert (batteries.effective_date, batteries.comment_deadline) == (None, date(2027, 1, 20))
    assert batteries.labels["document_type"] == "Proposed Rule" and rockers.labels["significant"] is False
    assert by_id["2026-22031"].labels["regulation_id_numbers"] == ["3084-AB88"]


def test_fr_follows_next_page_url_until_the_last_page():
    spider = make_spider(UsFrRulesSpider)
    first = call(spider, "parse", FR_API, (FIXTURES / "us_fr_rules/page1_of_2.json").read_bytes(), page=1)
    items = [o for o in first if isinstance(o, NoticeItem)]
    [following] = [o for o in first if isinstance(o, scrapy.Request)]
    assert len(items) == 5
    assert following.url == json.loads((FIXTURES / "us_fr_rules/page1_of_2.json").read_text())["next_page_url"]
    assert following.cb_kwargs == {"page": 2} and following.callback == spider.parse
    second = call(spider, "parse", following.url, (FIXTURES / "us_fr_rules/page2_of_2.json").read_bytes(), page=2)
    assert all(isinstance(o, NoticeItem) for o in second) and len(second) == 3
    assert {i.source_id for i in items} | {i.source_id for i in second} == {
        "2026-22418", "2026-21877", "2026-22031", "2026-21502", "2026-22307", "2026-22160", "2026-21960", "2026-21344"}


def test_fr_paging_stops_at_max_pages(caplog):
    spider = make_spider(UsFrRulesSpider)
    spider.source = spider.source.model_copy(update={"max_pages": 1})
    outputs = call(spider, "parse", FR_API, (FIXTURES / "us_fr_rules/page1_of_2.json").read_bytes(), page=1)
    assert not [o for o in outputs if isinstance(o, scrapy.Request)] and len(outputs) == 5
    assert any("stopped after 1 pages (max_pages)" in m for m in warnings(caplog))


def test_fr_unread_field_is_reported_and_markup_never_reaches_the_text(caplog):
    spider = make_spider(UsFrRulesSpider)
    with caplog.at_level(logging.INFO):
        [item] = call(spider, "parse", FR_API, (FIXTURES / "us_fr_rules/script.json").read_bytes(), page=1)
    assert item.title == "Safety Standard for Infant Rockers"
    assert item.text.startswith("The Commission issues a safety standard.")
    assert "alert(1)" not in item.text + item.title and "color" not in item.text
    assert "us_fr_rules: field document.new_field_from_the_api is not read by the spider" in [
        r.getMessage() for r in caplog.records]


def test_fr_document_without_title_is_skipped(caplog):
    spider = make_spider(UsFrRulesSpider)
    items = call(spider, "parse", FR_API, (FIXTURES / "us_fr_rules/no_title.json").read_bytes(), page=1)
    assert [i.source_id for i in items] == ["2026-21877"]
    assert warnings(caplog) == ["us_fr_rules: record 2026-29999 has no title, skipped"]


@pytest.mark.parametrize("fixture, kind", [("truncated.json", FAILURE_MALFORMED),
                                           ("error_page.html", FAILURE_ERROR_BODY),
                                           ("errors.json", FAILURE_ERROR_BODY), ("no_results.json", FAILURE_EMPTY)])
def test_fr_broken_answers_yield_nothing_and_are_reported(fixture, kind, caplog):
    spider = make_spider(UsFrRulesSpider)
    assert call(spider, "parse", FR_API, (FIXTURES / "us_fr_rules" / fixture).read_bytes(), page=1) == []
    assert reported(caplog, spider, kind), warnings(caplog)


def test_fr_redirects_within_the_site_are_followed_and_elsewhere_refused(caplog):
    spider = make_spider(UsFrRulesSpider)
    request = scrapy.Request(FR_API, cb_kwargs={"page": 1}, callback=spider.parse, errback=spider.on_error)
    same_site = respond(FR_API, b"", request, status=301,
                        headers={"Location": "https://www.federalregister.gov/api/v2/documents.json?page=1"})
    [hop] = list(spider.parse(same_site, page=1))
    assert hop.url == "https://www.federalregister.gov/api/v2/documents.json?page=1"
    assert hop.callback == spider.parse and hop.cb_kwargs == {"page": 1} and hop.meta["radar_redirects"] == 1
    assert hop.meta["dont_redirect"] and 301 in hop.meta["handle_httpstatus_list"]
    elsewhere = respond(FR_API, b"", request, status=302, headers={"Location": "https://fr-mirror.example.net/x.json"})
    assert list(spider.parse(elsewhere, page=1)) == []
    [message] = reported(caplog, spider, FAILURE_OFFSITE_REDIRECT)
    assert "redirects to https://fr-mirror.example.net/x.json, outside www.federalregister.gov" in message


# -- EUR-Lex Official Journal ----------------------------------------------------------------------


def test_eurlex_reads_the_three_feeds():
    spider = make_spider(EuEurlexOjSpider)
    requests = list(spider.start_requests_list())
    assert [(r.url, r.cb_kwargs["series"]) for r in requests] == [
        (OJ_L, "oj_l"),
        ("https://eur-lex.europa.eu/EN/display-feed.rss?rssId=221", "oj_c"),
        ("https://eur-lex.europa.eu/EN/display-feed.rss?rssId=161", "proposals"),
    ]


def test_eurlex_entry_fields():
    items, _ = crawl(make_spider(EuEurlexOjSpider), answer)
    by_id = {item.source_id: item for item in items}
    toys = by_id["CELEX:32026R2231"]
    assert toys.title == ("Regulation (EU) 2026/2231 of the European Parliament and of the Council of 12 November "
                          "2026 on the safety of toys and repealing Directive 2009/48/EC")
    assert toys.url == "https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX:32026R2231"
    assert toys.published == date(2026, 11, 23)
    assert toys.labels == {"series": "oj_l", "celex": "32026R2231", "act_type": "Regulation",
                           "oj_reference": "OJ L, 2026/2231, 23.11.2026", "document_date": "2026-11-12"}
    assert "digital product passport" in toys.text
    assert by_id["CELEX:32026D2175"].labels["act_type"] == "Decision"
    guidelines = by_id["OJ:C_202607311"]
    assert guidelines.labels == {"series": "oj_c"} and guidelines.published == date(2026, 11, 20)
    batteries = by_id["CELEX:52026PC0712"]
    assert batteries.labels == {"series": "proposals", "celex": "52026PC0712", "act_type": "Legislative proposal",
                                "procedure": "2026/0354(COD)", "document_date": "2026-11-18"}


BROKEN_FEEDS = [
    (EuEurlexOjSpider, OJ_L, "eu_eurlex_oj/truncated.rss", FAILURE_MALFORMED, 2),
    (EuEurlexOjSpider, OJ_L, "eu_eurlex_oj/invalid_entity.rss", FAILURE_MALFORMED, 6),
    (EuEurlexOjSpider, OJ_L, "eu_eurlex_oj/latin1_declared_utf8.rss", FAILURE_ENCODING, 1),
    (EuEurlexOjSpider, OJ_L, "eu_eurlex_oj/empty.rss", FAILURE_EMPTY, 0),
    (EuEurlexOjSpider, OJ_L, "eu_eurlex_oj/error_page.html", FAILURE_ERROR_BODY, 0),
    (EuEurlexOjSpider, OJ_L, "eu_eurlex_oj/js_shell.html", FAILURE_JS_SHELL, 0),
    (UkLegislationNewSpider, UK_FEED, "uk_legislation_new/truncated.feed", FAILURE_MALFORMED, 1),
    (UkLegislationNewSpider, UK_FEED, "uk_legislation_new/empty.feed", FAILURE_EMPTY, 0),
    (UkLegislationNewSpider, UK_FEED, "uk_legislation_new/error_page.html", FAILURE_ERROR_BODY, 0),
]


@pytest.mark.parametrize("cls, url, fixture, kind, kept", BROKEN_FEEDS, ids=[f[2] for f in BROKEN_FEEDS])
def test_broken_feeds_are_reported_by_name_and_keep_only_whole_entries(cls, url, fixture, kind, kept, caplog):
    spider = make_spider(cls)
    cb_kwargs = {"series": "oj_l"} if cls is EuEurlexOjSpider else {"page": 1}
    outputs = call(spider, "parse", url, (FIXTURES / fixture).read_bytes(), **cb_kwargs)
    items = [o for o in outputs if isinstance(o, NoticeItem)]
    assert len(items) == kept
    assert reported(caplog, spider, kind), warnings(caplog)
    for item in items:  # whatever is kept is a whole record, never a fragment of markup
        assert item.title and item.source_id and "&" not in item.title and "<" not in item.text


def test_eurlex_feed_in_the_wrong_encoding_keeps_its_accents():
    [item] = call(make_spider(EuEurlexOjSpider), "parse", OJ_L,
                  (FIXTURES / "eu_eurlex_oj/latin1_declared_utf8.rss").read_bytes(), series="proposals")
    assert item.title == "Proposition de Règlement du Parlement européen et du Conseil relatif à la sécurité des jouets"
    assert item.labels["procedure"] == "2026/0250(COD)"


def test_eurlex_truncated_feed_drops_the_entry_it_cut():
    items = call(make_spider(EuEurlexOjSpider), "parse", OJ_L, (FIXTURES / "eu_eurlex_oj/truncated.rss").read_bytes(),
                 series="oj_l")
    assert [i.source_id for i in items] == ["CELEX:32026R2231", "CELEX:32026R2204"]
    assert items[-1].text.endswith("warnings and safety information on online interfaces.")


# -- legislation.gov.uk ----------------------------------------------------------------------------


def test_uk_legislation_follows_the_next_page_link():
    spider = make_spider(UkLegislationNewSpider)
    outputs = call(spider, "parse", UK_FEED, sample_path(UK_FEED).read_bytes(), page=1)
    [following] = [o for o in outputs if isinstance(o, scrapy.Request)]
    assert following.url == UK_FEED + "?page=2" and following.cb_kwargs == {"page": 2}
    assert len([o for o in outputs if isinstance(o, NoticeItem)]) == 6
    last = call(spider, "parse", following.url, sample_path(following.url).read_bytes(), page=2)
    assert len(last) == 3 and all(isinstance(o, NoticeItem) for o in last)


def test_uk_legislation_entry_fields():
    items, fetched = crawl(make_spider(UkLegislationNewSpider), answer)
    assert fetched == [UK_FEED, UK_FEED + "?page=2"]
    by_id = {item.source_id: item for item in items}
    marketplaces = by_id["uksi/2026/1187"]
    assert marketplaces.title == "The Product Safety and Metrology (Online Marketplaces) Regulations 2026"
    assert marketplaces.url == "https://www.legislation.gov.uk/uksi/2026/1187/contents/made"
    assert marketplaces.published == date(2026, 11, 19)  # the day it was made, not the day it was listed
    assert marketplaces.updated == date(2026, 11, 24)
    assert marketplaces.labels == {"document_type": "UnitedKingdomStatutoryInstrument", "year": "2026",
                                   "number": "1187", "isbn": "9780348271836"}
    assert "verify the identity of traders" in marketplaces.text
    welsh = by_id["wsi/2026/1203"]
    assert welsh.title == "The Food (Promotion and Placement) (Wales) (Amendment) Regulations 2026"
    assert welsh.labels["welsh_title"] == "Rheoliadau Bwyd (Hyrwyddo a Lleoli) (Cymru) (Diwygio) 2026"
    assert by_id["ukpga/2026/31"].url == "https://www.legislation.gov.uk/ukpga/2026/31/contents/enacted"
    assert by_id["nisr/2026/288"].labels["document_type"] == "NorthernIrelandStatutoryRule"


# -- US Consolidated Screening List ----------------------------------------------------------------


def csl_parse(spider, path: Path):
    return call(spider, "parse", CSL_URL, path.read_bytes())


def test_csl_first_run_stores_the_snapshot_as_the_baseline(db_url, caplog):
    spider = make_spider(UsTradeCslSpider)
    [request] = spider.start_requests_list()
    assert request.meta["download_maxsize"] == 100_000_000  # the file is larger than max_response_bytes
    with caplog.at_level(logging.INFO):
        [snapshot] = csl_parse(spider, CSL_SAMPLE)
    assert snapshot.source_id == "snapshot"
    assert snapshot.title == "US Consolidated Screening List: 10 entries on 7 lists"
    assert snapshot.raw_body == CSL_SAMPLE.read_bytes()
    assert snapshot.labels["entries"] == 10
    assert snapshot.labels["lists"]["Entity List (EL) - Bureau of Industry and Security"] == 3
    assert snapshot.published == date(2026, 11, 3)  # the newest listing: the sample has no Last-Modified
    assert "first snapshot, 10 entries, kept as the baseline" in caplog.text


def test_csl_diff_against_the_stored_snapshot_yields_added_and_removed_entries(engine):
    spider = make_spider(UsTradeCslSpider)
    [baseline] = csl_parse(spider, CSL_SAMPLE)
    with session_scope(engine) as session:
        store_items(session, [baseline])
    items = csl_parse(spider, FIXTURES / "us_trade_csl/consolidated_next_day.json")
    today = date.today().isoformat()
    assert [i.source_id for i in items] == [f"added/1fe4a7c062/{today}", f"added/88c1d5e9f0/{today}",
                                            f"removed/e58a0c7716/{today}", "snapshot"]
    drones, _istanbul, removed, snapshot = items
    assert snapshot.title == "US Consolidated Screening List: 11 entries on 6 lists"
    assert drones.title == ("Added to the Entity List (EL) - Bureau of Industry and Security: "
                            "Ningbo Blue Ocean Drone Parts Co., Ltd.")
    assert drones.url == ("https://www.bis.gov/licensing/"
                          "guidance-on-end-user-and-end-use-controls-and-us-person-controls")
    assert drones.published == drones.effective_date == date(2026, 11, 24)
    assert drones.country_labels == ["CN"]
    assert drones.labels == {
        "action": "added", "list": "Entity List (EL) - Bureau of Industry and Security", "entry_id": "1fe4a7c062",
        "entity_type": "Entity", "alt_names": ["Blue Ocean UAV", "NBO Drone"],
        "addresses": ["No. 99 Binhai Road, Ningbo, Zhejiang, CN"], "federal_register_notice": "91 FR 77002",
        "license_requirement": "For all items subject to the EAR.", "license_policy": "Presumption of denial.",
    }
    assert drones.text.splitlines()[:2] == [
        "Added to the Entity List (EL) - Bureau of Industry and Security: Ningbo Blue Ocean Drone Parts Co., Ltd.",
        "Also known as: Blue Ocean UAV; NBO Drone."]
    assert json.loads(drones.raw_body)["id"] == "1fe4a7c062"  # the entry itself, not the whole list
    assert removed.title == ("Removed from the Unverified List (UVL) - Bureau of Industry and Security: "
                             "Almaty Precision Instruments LLP")
    assert removed.published == date.today() and removed.effective_date is None
    assert removed.labels["action"] == "removed" and removed.country_labels == ["KZ"]


def test_csl_snapshot_that_shrank_is_not_diffed(engine, caplog):
    spider = make_spider(UsTradeCslSpider)
    with session_scope(engine) as session:
        store_items(session, csl_parse(spider, CSL_SAMPLE))
    assert csl_parse(spider, FIXTURES / "us_trade_csl/consolidated_shrunk.json") == []
    [message] = reported(caplog, spider, FAILURE_LAYOUT)
    assert "lists 3 entries, the last snapshot 10; not diffed" in message


@pytest.mark.parametrize("fixture, kind", [("truncated.json", FAILURE_MALFORMED),
                                           ("error_page.html", FAILURE_ERROR_BODY),
                                           ("empty_results.json", FAILURE_EMPTY)])
def test_csl_broken_downloads_yield_nothing(fixture, kind, caplog, sqlite_url):
    spider = make_spider(UsTradeCslSpider)
    assert csl_parse(spider, FIXTURES / "us_trade_csl" / fixture) == []
    assert reported(caplog, spider, kind), warnings(caplog)


# -- EU dual-use list and CN-code annexes ----------------------------------------------------------

DUAL_USE = "https://eur-lex.europa.eu/legal-content/EN/TXT/HTML/?uri=CELEX:32024R2547"
SANCTIONS = "https://eur-lex.europa.eu/legal-content/EN/TXT/HTML/?uri=CELEX:32014R0833"
AMENDING = "https://eur-lex.europa.eu/legal-content/EN/TXT/HTML/?uri=CELEX:32023R0427"


def test_dual_use_categories_keep_their_control_entries():
    spider = make_spider(EuTradeDualuseSpider)
    items = call(spider, "parse", DUAL_USE, sample_path(DUAL_USE).read_bytes(), act_key="dual_use_list")
    assert [i.source_id for i in items] == [f"32024R2547/annex-I/category-{n}" for n in (3, 4, 5, 6, 9)]
    electronics = items[0]
    assert electronics.title == ("Dual-use items, Category 3 – Electronics "
                                 "(Commission Delegated Regulation (EU) 2024/2547)")
    assert electronics.published == date(2024, 9, 5)
    assert electronics.category_labels == ["Electronics"]
    assert list(electronics.labels["control_entries"]) == ["3A001", "3A002", "3A003"]
    assert electronics.labels["control_entries"]["3A002"].startswith("General purpose ‘electronic assemblies’")
    assert {k: v for k, v in electronics.labels.items() if k != "control_entries"} == {
        "list": "dual_use", "act": "Commission Delegated Regulation (EU) 2024/2547", "celex": "32024R2547",
        "annex": "I", "category": "3"}
    computers = items[1]  # entries written as paragraphs rather than table rows
    assert list(computers.labels["control_entries"]) == ["4A003", "4A004"]
    assert items[2].category_labels == ["Telecommunications and ‘information security’"]
    assert "9A012 ‘Unmanned aerial vehicles’" in items[4].text


def test_sanctions_annex_keeps_cn_codes_with_their_descriptions():
    # The act as published in 2014, in the Official Journal's older XHTML (p.doc-ti, p.tbl-txt): Annex I names the
    # authorities and Annex III the banks, so only Annex II, the goods by CN code, is a notice.
    spider = make_spider(EuTradeDualuseSpider)
    [annex] = call(spider, "parse", SANCTIONS, sample_path(SANCTIONS).read_bytes(), act_key="russia")
    assert annex.source_id == "32014R0833/annex-II"
    assert annex.title == "List of items referred to in Article 3 – Annex II, Council Regulation (EU) No 833/2014"
    assert annex.published == date(2014, 7, 31)
    assert list(annex.labels["cn_codes"])[:3] == ["7304 11 00", "7304 19 10", "7304 22 00"]
    assert annex.labels["cn_codes"]["8705 20 00"] == "Mobile drilling derricks"
    assert annex.labels["cn_codes"]["8413 50"] == "Other reciprocating positive displacement pumps for liquids"
    assert "Mobile drilling derricks" in annex.category_labels and len(annex.category_labels) == 11
    assert "CN 8905 20 00: Floating or submersible drilling or production platforms" in annex.text
    assert {k: annex.labels[k] for k in ("list", "act", "celex", "annex")} == {
        "list": "sanctions_cn_codes", "act": "Council Regulation (EU) No 833/2014", "celex": "32014R0833",
        "annex": "II"}
    assert "amends" not in annex.labels


def test_annex_of_an_amending_act_names_the_annex_it_amends():
    spider = make_spider(EuTradeDualuseSpider)
    body = (FIXTURES / "eu_trade_dualuse" / "amending_act.html").read_bytes()
    [annex] = call(spider, "parse", AMENDING, body, act_key="russia_sanctions_2023_427")
    assert annex.source_id == "32023R0427/annex-VI"
    assert annex.labels["amends"] == "Annex XXIII to Regulation (EU) No 833/2014"
    assert annex.title == ("Goods which could contribute in particular to the enhancement of Russian industrial "
                           "capacities – Annex VI, amending Annex XXIII to Regulation (EU) No 833/2014, "
                           "Council Regulation (EU) 2023/427")
    assert list(annex.labels["cn_codes"]) == ["8427 10", "8429 51", "8502 13"]


@pytest.mark.parametrize("fixture, kind", [("not_found.html", FAILURE_ERROR_BODY), ("js_shell.html", FAILURE_JS_SHELL),
                                           ("layout_changed.html", FAILURE_LAYOUT)])
def test_dual_use_pages_without_goods_are_reported(fixture, kind, caplog):
    spider = make_spider(EuTradeDualuseSpider)
    assert call(spider, "parse", SANCTIONS, (FIXTURES / "eu_trade_dualuse" / fixture).read_bytes(), act_key="x") == []
    assert reported(caplog, spider, kind), warnings(caplog)


def test_dual_use_empty_body_is_reported(caplog):
    spider = make_spider(EuTradeDualuseSpider)
    assert call(spider, "parse", DUAL_USE, b"  ", act_key="x") == []
    assert reported(caplog, spider, FAILURE_EMPTY)


# -- end to end, through a real HTTP server --------------------------------------------------------

FR_PATH = "/www.federalregister.gov/api/v1/documents.json"
CSL_PATH = "/data.trade.gov/downloadable_consolidated_screening_list/v1/consolidated.json"


def run(server: SampleServer, *names: str, env: dict[str, str] | None = None):
    result = crawl_subprocess(list(names), mirror=server.url, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def notices(engine, source: str) -> dict[str, Notice]:
    with Session(engine) as session:
        return {n.source_id: n for n in session.exec(select(Notice).where(Notice.source == source)).all()}


def test_fr_pages_through_the_api_broken_sources_fail_alone_and_a_recrawl_transfers_almost_nothing(sqlite_url):
    engine = get_engine(sqlite_url)
    page2 = json.loads((FIXTURES / "us_fr_rules/page1_of_2.json").read_text())["next_page_url"]
    with SampleServer() as server:
        server.add_route(FR_PATH, Route(body=(FIXTURES / "us_fr_rules/page1_of_2.json").read_bytes(),
                                        content_type="application/json"))
        server.add_route(FR_PATH + "?" + urlsplit(page2).query,
                         Route(body=(FIXTURES / "us_fr_rules/page2_of_2.json").read_bytes(),
                               content_type="application/json"))
        # In the same run, two other sources answer with an error page and a script shell.
        server.add_route("/www.legislation.gov.uk/new/data.feed",
                         Route(body=(FIXTURES / "uk_legislation_new/error_page.html").read_bytes(),
                               content_type="text/html"))
        server.add_route("/eur-lex.europa.eu/legal-content/EN/TXT/HTML/",
                         Route(body=(FIXTURES / "eu_trade_dualuse/js_shell.html").read_bytes(),
                               content_type="text/html"))
        # And the screening list is larger than its own size limit.
        run(server, "us_fr_rules", "uk_legislation_new", "eu_trade_dualuse", "eu_eurlex_oj", "us_trade_csl",
            env={"RADAR_CSL_MAX_RESPONSE_BYTES": "5000"})
        runs = last_runs(engine)
        run(server, "us_fr_rules")
        second = last_runs(engine)["us_fr_rules"]
    first = runs["us_fr_rules"]
    assert (first.status, first.records, first.new) == ("ok", 8, 8)
    assert (second.status, second.new, second.unchanged) == ("ok", 0, 8)
    assert second.bytes < first.bytes * 0.05, (first.bytes, second.bytes)
    stored = notices(engine, "us_fr_rules")
    assert stored["2026-22160"].comment_deadline == date(2027, 1, 5)
    assert stored["2026-21877"].effective_date == date(2027, 5, 3)
    assert runs["eu_eurlex_oj"].status == "ok" and runs["eu_eurlex_oj"].records == 12
    assert runs["uk_legislation_new"].status == "failed"
    assert any(m.startswith("error_body: HTML page instead of a feed") for m in runs["uk_legislation_new"].messages)
    assert runs["eu_trade_dualuse"].status == "failed"
    assert any(m.startswith("javascript_shell:") for m in runs["eu_trade_dualuse"].messages)
    assert notices(engine, "uk_legislation_new") == {} and notices(engine, "eu_trade_dualuse") == {}
    assert runs["us_trade_csl"].status == "failed" and notices(engine, "us_trade_csl") == {}
    assert any(m.startswith("http_error:") and "consolidated.json" in m for m in runs["us_trade_csl"].messages), \
        runs["us_trade_csl"].messages


def test_csl_second_snapshot_stores_the_changes_in_the_database(sqlite_url):
    # One database is enough here: the diff against a snapshot stored in PostgreSQL is tested above, in-process.
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        run(server, "us_trade_csl")
        assert set(notices(engine, "us_trade_csl")) == {"snapshot"}
        server.add_route(CSL_PATH, Route(body=(FIXTURES / "us_trade_csl/consolidated_next_day.json").read_bytes(),
                                         content_type="application/json"))
        run(server, "us_trade_csl")
        run(server, "us_trade_csl")  # unchanged since: nothing new, nothing removed again
    stored = notices(engine, "us_trade_csl")
    today = date.today().isoformat()
    assert set(stored) == {"snapshot", f"added/1fe4a7c062/{today}", f"added/88c1d5e9f0/{today}",
                           f"removed/e58a0c7716/{today}"}
    assert stored["snapshot"].version == 2 and stored["snapshot"].labels["entries"] == 11
    with Session(engine) as session:
        versions = session.exec(select(func.count()).select_from(NoticeVersion)
                                .where(NoticeVersion.notice_id == stored["snapshot"].id)).one()
    assert versions == 2
    run_record = last_runs(engine)["us_trade_csl"]
    assert (run_record.status, run_record.records, run_record.new) == ("ok", 1, 0)
