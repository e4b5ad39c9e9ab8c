"""The three regulator spiders, on the demo samples and on recorded broken responses, without a running crawler."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path

import pytest
import scrapy
import yaml
from scrapy.http import HtmlResponse, TextResponse, XmlResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawlers.base import (
    FAILURE_EMPTY,
    FAILURE_ERROR_BODY,
    FAILURE_HTTP_ERROR,
    FAILURE_JS_SHELL,
    FAILURE_MALFORMED,
)
from crawlers.items import NoticeItem
from spiderkit import FIXTURES, SAMPLES, crawl, sample_path, warnings
from crawlers.sources import default_sources_dir, load_sources
from crawlers.spiders.eu_safety_gate_alerts import EuSafetyGateAlertsSpider
from crawlers.spiders.uk_opss_alerts import UkOpssAlertsSpider
from crawlers.spiders.us_cpsc_recalls import UsCpscRecallsSpider
from radar.errors import ConfigError
from radar.settings import get_settings

UK_FEED = SAMPLES / "www.gov.uk" / "product-safety-alerts-reports-recalls.atom"
UK_API = "https://www.gov.uk/api/content/product-safety-alerts-reports-recalls/"
UK_PAGE = "https://www.gov.uk/product-safety-alerts-reports-recalls/"
UK_MAGNETS = "product-recall-magnetic-building-tiles-60-pieces-sold-via-online-marketplaces-2405-0187"
SG = "https://ec.europa.eu/safety-gate-alerts/"
SG_SAMPLES = SAMPLES / "ec.europa.eu" / "safety-gate-alerts"
CPSC_SAMPLE = SAMPLES / "www.saferproducts.gov" / "RestWebServices" / "Recall"
CPSC_URL = "https://www.saferproducts.gov/RestWebServices/Recall?format=json"

def make_spider(cls):
    return cls(source=load_sources()[cls.name])

def respond(url: str, path: Path | None = None, *, body: bytes | None = None, request=None, status=200):
    """A response as the server would send it: the class and Content-Type follow the file's kind."""
    body = path.read_bytes() if body is None else body
    kind = path.suffix if path is not None and path.suffix else (".xml" if body.lstrip()[:1] == b"<" else ".json")
    content_type = {".atom": "application/atom+xml", ".xml": "application/xml", ".html": "text/html; charset=utf-8",
                    ".json": "application/json"}[kind]
    cls = {".atom": XmlResponse, ".xml": XmlResponse, ".html": HtmlResponse, ".json": TextResponse}[kind]
    request = request or scrapy.Request(url)
    return cls(url=url, body=body, headers={"Content-Type": content_type}, request=request, status=status,
               encoding="utf-8")

def answer(request, path):
    """How crawl() answers a request: the demo sample for its URL."""
    return respond(request.url, path, request=request)

def call(spider, callback: str, url: str, path: Path, **cb_kwargs):
    request = scrapy.Request(url, cb_kwargs=cb_kwargs)
    return list(getattr(spider, callback)(respond(url, path, request=request), **cb_kwargs) or ())

# -- every source, on its demo samples -------------------------------------------------------------

def test_sources_are_configured():
    sources = load_sources()
    assert {sources[n].jurisdiction for n in ("uk_opss_alerts", "eu_safety_gate_alerts", "us_cpsc_recalls")} == {
        "juris.uk", "juris.eu", "juris.us"}

def test_spider_without_a_source_reads_its_yaml_from_the_sources_dir_setting(tmp_path, monkeypatch):
    config = yaml.safe_load((default_sources_dir() / "us_cpsc_recalls.yml").read_text(encoding="utf-8"))
    config["url"] = "https://cpsc.mirror.example.org/RestWebServices/Recall?format=json"
    (tmp_path / "us_cpsc_recalls.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(tmp_path))
    get_settings.cache_clear()
    assert UsCpscRecallsSpider().source.url == config["url"]
    # A sources folder without the spider's file says which file it looked for.
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"elsewhere/us_cpsc_recalls\.yml"):
        UsCpscRecallsSpider()

@pytest.mark.parametrize("cls, count", [(UkOpssAlertsSpider, 8), (EuSafetyGateAlertsSpider, 9),
                                        (UsCpscRecallsSpider, 10)])
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
        assert item.category_labels and item.risk_labels
        assert "<" not in item.text
    assert all(url.startswith("https://") for url in fetched)
    bounds = spider.source.bounds
    assert bounds.min_records <= count <= bounds.max_records
    assert warnings(caplog) == []
    assert not [r for r in caplog.records if "is not read by the spider" in r.getMessage()]

# -- UK OPSS ---------------------------------------------------------------------------------------

def test_uk_feed_asks_the_content_api_for_each_entry():
    spider = make_spider(UkOpssAlertsSpider)
    requests = call(spider, "parse", spider.source.url, UK_FEED)
    assert len(requests) == 8
    first = requests[0]
    assert first.url == UK_API + "product-recall-universal-travel-adaptor-ta-300-2506-0121"
    assert first.callback == spider.parse_notice and first.errback == spider.on_error
    assert first.cb_kwargs == {"page_url": UK_PAGE + "product-recall-universal-travel-adaptor-ta-300-2506-0121"}
    assert UK_API + UK_MAGNETS in [r.url for r in requests]

def test_uk_feed_entry_that_is_not_a_notice_is_skipped(caplog):
    spider = make_spider(UkOpssAlertsSpider)
    feed = (b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id><title>Finder</title>'
            b'<link rel="alternate" type="text/html" href="https://www.gov.uk/government/news/x"/></entry></feed>')
    assert list(spider.parse(respond(spider.source.url, body=feed))) == []
    assert any("links to 'https://www.gov.uk/government/news/x'" in m for m in warnings(caplog))

def test_uk_notice_fields():
    spider = make_spider(UkOpssAlertsSpider)
    path = sample_path(UK_API + UK_MAGNETS)
    [item] = call(spider, "parse_notice", UK_API + UK_MAGNETS, path, page_url=UK_PAGE + UK_MAGNETS)
    assert item.source_id == "5b1d6f0e-2c4a-4a57-9d2e-6f1f0b7e8a11"
    assert item.url == UK_PAGE + UK_MAGNETS
    assert item.title == "Product Recall: Magnetic Building Tiles 60 pieces sold via online marketplaces (2405-0187)"
    assert item.text.startswith("The magnets can detach from the tiles and be swallowed by young children")
    assert "Toys (Safety) Regulations 2011" in item.text and "Product Identifiers" in item.text
    assert item.published == item.updated == date(2024, 5, 23)
    assert (item.product_name, item.brand, item.model) == ("Magnetic Building Tiles 60 pieces", "MagicBlocs", "MBT-60")
    assert item.gtin == "5061234567894"
    assert item.batch is None  # "Unknown" is not a batch number
    assert item.category_labels == ["Toys"]
    assert item.risk_labels == ["Serious"]
    assert item.country_labels == ["China"]
    assert item.labels == {
        "alert_type": "Product recall",
        "measure_types": ["Recall of the product from end users", "Removal of the listing by the online marketplace"],
        "recall_alert_date": "2024-05-20",
        "psd_reference": "2405-0187",
        "origin_countries": ["China"],
    }
    assert item.raw_body == path.read_bytes() and item.raw_content_type == "application/json"

def test_uk_country_is_named_only_when_the_notice_names_it():
    items, _ = crawl(make_spider(UkOpssAlertsSpider), answer)
    by_ref = {item.labels["psd_reference"]: item for item in items}
    assert by_ref["2502-0033"].country_labels == ["United Kingdom"]  # the sleeping bag is made in the UK
    assert all(item.country_labels != ["United Kingdom"] for ref, item in by_ref.items() if ref != "2502-0033")
    charger = by_ref["2311-0042"]
    assert charger.category_labels == ["Electrical appliances and equipment"] and "sold online in Germany" in charger.text

# -- EU Safety Gate --------------------------------------------------------------------------------

def test_eu_index_follows_the_newest_weekly_reports_verbatim():
    spider = make_spider(EuSafetyGateAlertsSpider)
    path = SG_SAMPLES / "api/download/weeklyReport/list/xml/en"
    requests = call(spider, "parse", spider.source.url, path)
    assert [r.url for r in requests] == [
        SG + "api/download/weeklyReport/detail/xml/10000296?language=en&search=WEB_REPORT%7C:%7C10000296,",
        SG + "api/download/weeklyReport/detail/xml/10000295?language=en&search=WEB_REPORT%7C:%7C10000295,",
    ]  # max_pages: 2 of the 3 listed
    assert [r.cb_kwargs for r in requests] == [{"report": "Report-2026-07"}, {"report": "Report-2026-06"}]
    assert requests[0].callback == spider.parse_report

def test_eu_index_order_comes_from_the_dates_not_the_file():
    spider = make_spider(EuSafetyGateAlertsSpider)
    listing = "".join(f"<weeklyReport><reference>R{n}</reference><publicationDate>{d}</publicationDate>"
                      f"<URL>{SG}api/download/weeklyReport/detail/xml/{n}</URL></weeklyReport>"
                      for n, d in ((1, "02/01/2025"), (3, "16/01/2025"), (2, "09/01/2025")))
    requests = list(spider.parse(respond(spider.source.url, body=f"<Safety-Gate>{listing}</Safety-Gate>".encode())))
    assert [r.cb_kwargs["report"] for r in requests] == ["R3", "R2"]

def eu_report(spider, path=SG_SAMPLES / "api/download/weeklyReport/detail/xml/10000296"):
    url = SG + "api/download/weeklyReport/detail/xml/10000296?language=en&search=WEB_REPORT%7C:%7C10000296,"
    return call(spider, "parse_report", url, path, report="Report-2026-07")

def test_eu_report_reads_each_notification_and_asks_for_its_json():
    spider = make_spider(EuSafetyGateAlertsSpider)
    outputs = eu_report(spider)
    requests = [o for o in outputs if isinstance(o, scrapy.Request)]
    items = [o for o in outputs if isinstance(o, NoticeItem)]
    assert [r.url for r in requests] == [f"{SG}public/api/notification/{n}?language=en"
                                         for n in (10120101, 10120102, 10120104, 10120105)]
    assert requests[0].callback == spider.parse_notification and requests[0].errback == spider.notification_failed
    # No alert page, so no JSON to ask for: the weekly report's notice is yielded as it is.
    assert [i.source_id for i in items] == ["SR/00418/26"]
    charger = requests[0].cb_kwargs["item"]
    assert charger.source_id == "SR/00412/26"
    assert charger.url == SG + "screen/webReport/alertDetail/10120101"
    assert charger.title == "USB charger – Fast Charger 20W PD – VOLTIX"
    assert charger.published == date(2026, 2, 13) and charger.updated is None
    assert (charger.product_name, charger.brand, charger.model) == ("Fast Charger 20W PD", "VOLTIX", "VX-PD20-EU")
    assert (charger.gtin, charger.batch) == ("4262398110464", "2405B")
    assert charger.category_labels == ["Electrical appliances and equipment"]
    assert charger.risk_labels == ["Electric shock"]
    assert charger.country_labels == ["Germany", "People's Republic of China"]
    assert charger.text.startswith("White plug-in USB-C charger with EU plug, rated 20 W, sold online in Germany")
    assert "EN IEC 62368-1" in charger.text
    assert charger.labels == {
        "notifying_country": "Germany",
        "origin_country": "People's Republic of China",
        "risk_level": "Serious risk",
        "measures": "Removal of the listing by the online marketplace; Withdrawal of the product from the market",
        "barcode": "4262398110464",
        "weekly_report": "Report-2026-07",
    }
    toys = requests[1].cb_kwargs["item"]
    assert toys.category_labels == ["Toys"] and toys.risk_labels == ["Choking", "Injuries"]

def test_eu_notification_json_adds_reacting_countries_and_last_change():
    spider = make_spider(EuSafetyGateAlertsSpider)
    request = eu_report(spider)[0]
    [item] = call(spider, "parse_notification", request.url, SG_SAMPLES / "public/api/notification/10120101",
                  **request.cb_kwargs)
    assert item is request.cb_kwargs["item"]
    assert item.updated == date(2026, 2, 16)
    assert item.country_labels == ["Germany", "People's Republic of China", "Austria", "Netherlands"]
    assert item.labels["reacting_countries"] == ["Austria", "Netherlands"]
    assert item.labels["sold_online"] == "YES" and item.labels["counterfeit"] == "UNKNOWN"
    assert item.labels["measure_types"] == ["VOLUNTARY"] and item.labels["notification_type"] == "ARTICLE_12"

def test_eu_notification_json_failures_keep_the_weekly_report_notice(caplog):
    spider = make_spider(EuSafetyGateAlertsSpider)
    request = eu_report(spider)[0]
    labels = dict(request.cb_kwargs["item"].labels)
    [item] = call(spider, "parse_notification", request.url, FIXTURES / "eu_safety_gate_alerts/notification_truncated.json",
                  **request.cb_kwargs)
    assert item.source_id == "SR/00412/26" and item.labels == labels
    assert any(f"eu_safety_gate_alerts: {FAILURE_MALFORMED}:" in m for m in warnings(caplog))

    failure = Failure(HttpError(respond(request.url, body=b"", request=request, status=404), "Ignoring non-200"))
    failure.request = request
    assert list(spider.notification_failed(failure)) == [request.cb_kwargs["item"]]
    assert any(f"{FAILURE_HTTP_ERROR}: HTTP 404 from {request.url}" in m for m in warnings(caplog))

# -- US CPSC ---------------------------------------------------------------------------------------

def test_cpsc_asks_for_recalls_published_or_edited_in_the_last_90_days():
    [request] = make_spider(UsCpscRecallsSpider).start_requests_list()
    since = (date.today() - timedelta(days=90)).isoformat()
    assert request.url == f"{CPSC_URL}&LastPublishDateStart={since}"

def test_cpsc_recall_fields():
    spider = make_spider(UsCpscRecallsSpider)
    items = call(spider, "parse", CPSC_URL, CPSC_SAMPLE)
    magnets, charger = items[0], items[1]
    assert magnets.source_id == "26118"
    assert magnets.url == ("https://www.cpsc.gov/Recalls/2026/"
                           "MagicBlocs-Magnetic-Building-Tiles-Recalled-Due-to-Magnet-Ingestion-Hazard")
    assert magnets.title.startswith("MagicBlocs Magnetic Building Tiles Recalled Due to Magnet Ingestion Hazard")
    assert magnets.published == magnets.updated == date(2026, 1, 22)
    assert (magnets.product_name, magnets.brand, magnets.model) == ("MagicBlocs Magnetic Building Tiles", None, "MBT-60")
    assert magnets.gtin == "850012345671"
    assert magnets.category_labels == ["Toys - Magnets"]
    assert magnets.risk_labels == ["Magnet Ingestion"]
    assert magnets.country_labels == ["China"]
    assert magnets.text.startswith("This recall involves MagicBlocs Magnetic Building Tiles 60-piece sets.")
    assert "\n\nHazard: The magnets can detach from the tiles." in magnets.text
    assert "\n\nRemedy: Consumers should immediately take the recalled tiles away" in magnets.text
    assert magnets.labels == {
        "recall_id": "10712",
        "origin_countries": ["China"],
        "units": ["About 24,500"],
        "upcs": ["850012345671"],
        "remedies": ["Consumers should immediately take the recalled tiles away from children and contact MagicBlocs "
                     "for a full refund. Consumers will be asked to destroy the tiles and upload a photo of the "
                     "destroyed product."],
        "remedy_options": ["Refund"],
        "injuries": ["MagicBlocs has received three reports of magnets detaching. No injuries have been reported."],
        "sold_at_label": "Sold Exclusively At",
        "manufacturers": ["Shenzhen MagicBlocs Toys Co., Ltd., of China"],
        "retailers": ["Amazon.com from March 2024 through October 2025 for between $30 and $45."],
    }
    assert charger.risk_labels == ["Electrocution/Electric Shock", "Fire & Fire-Related Burn"]
    assert charger.gtin == "069317245818" and len(charger.labels["upcs"]) == 2
    assert charger.category_labels == ["Adapter/Power Supply/Charger/Battery"]
    assert charger.updated == date(2025, 7, 24) and "sold with an EU plug in Germany" in charger.text

def test_cpsc_new_field_is_reported_once(caplog):
    spider = make_spider(UsCpscRecallsSpider)
    recalls = json.loads(CPSC_SAMPLE.read_text())
    for recall in recalls[:2]:
        recall["RecallPriority"] = "High"
    with caplog.at_level(logging.INFO):
        items = list(spider.parse(respond(CPSC_URL, body=json.dumps(recalls).encode())))
    assert len(items) == 10
    assert [r.getMessage() for r in caplog.records if "RecallPriority" in r.getMessage()] == [
        "us_cpsc_recalls: field recall.RecallPriority is not read by the spider"]

# -- what every spider does with broken, empty and hostile answers ---------------------------------

UK, EU, US = UkOpssAlertsSpider, EuSafetyGateAlertsSpider, UsCpscRecallsSpider
SILENT_FAILURES = [
    (UK, "parse", "uk_opss_alerts/feed_truncated.atom", FAILURE_MALFORMED),
    (UK, "parse", "uk_opss_alerts/feed_error_page.html", FAILURE_ERROR_BODY),
    (UK, "parse", "uk_opss_alerts/feed_empty.atom", FAILURE_EMPTY),
    (UK, "parse_notice", "uk_opss_alerts/notice_truncated.json", FAILURE_MALFORMED),
    (EU, "parse", "eu_safety_gate_alerts/list_truncated.xml", FAILURE_MALFORMED),
    (EU, "parse_report", "eu_safety_gate_alerts/report_js_shell.html", FAILURE_JS_SHELL),
    (EU, "parse_report", "eu_safety_gate_alerts/report_error_page.html", FAILURE_ERROR_BODY),
    (EU, "parse_report", "eu_safety_gate_alerts/report_empty.xml", FAILURE_EMPTY),
    (US, "parse", "us_cpsc_recalls/recalls_truncated.json", FAILURE_MALFORMED),
    (US, "parse", "us_cpsc_recalls/recalls_error_page.html", FAILURE_ERROR_BODY),
    (US, "parse", "us_cpsc_recalls/recalls_empty.json", FAILURE_EMPTY),
    (US, "parse", "us_cpsc_recalls/recalls_error_record.json", FAILURE_ERROR_BODY),
]
CB_KWARGS = {"parse_notice": {"page_url": UK_PAGE + UK_MAGNETS}, "parse_report": {"report": "Report-2026-07"}}

@pytest.mark.parametrize("cls, callback, fixture, kind", SILENT_FAILURES,
                         ids=[f[2].split("/")[1] for f in SILENT_FAILURES])
def test_silent_failures_yield_nothing_and_are_reported(cls, callback, fixture, kind, caplog):
    spider = make_spider(cls)
    outputs = call(spider, callback, spider.source.url, FIXTURES / fixture, **CB_KWARGS.get(callback, {}))
    assert outputs == []
    assert [m for m in warnings(caplog) if m.startswith(f"{cls.name}: {kind}: ")], warnings(caplog)

@pytest.mark.parametrize("cls", [UK, EU, US])
def test_an_empty_body_is_reported(cls, caplog):
    spider = make_spider(cls)
    assert list(spider.parse(respond(spider.source.url, body=b"", request=scrapy.Request(spider.source.url)))) == []
    assert [m for m in warnings(caplog) if m.startswith(f"{cls.name}: {FAILURE_EMPTY}: ")]

def test_records_without_a_title_are_skipped_with_a_warning(caplog):
    uk = call(make_spider(UK), "parse_notice", UK_API + "x", FIXTURES / "uk_opss_alerts/notice_no_title.json",
              page_url=UK_PAGE + "x")
    eu = eu_report(make_spider(EU), FIXTURES / "eu_safety_gate_alerts/report_no_title.xml")
    us = call(make_spider(US), "parse", CPSC_URL, FIXTURES / "us_cpsc_recalls/recalls_no_title.json")
    assert uk == []
    assert [r.cb_kwargs["item"].source_id for r in eu] == ["SR/00415/26"]
    assert [i.source_id for i in us] == ["25245"]
    assert warnings(caplog) == [
        "uk_opss_alerts: record 0b8e5d2c-1a4f-4c7e-9d3b-6a2f8e1c5d99 has no title, skipped",
        "eu_safety_gate_alerts: record SR/00999/26 has no title, skipped",
        "us_cpsc_recalls: record 26999 has no title, skipped",
    ]

def test_markup_and_scripts_never_reach_the_text():
    [uk] = call(make_spider(UK), "parse_notice", UK_API + "x", FIXTURES / "uk_opss_alerts/notice_script.json",
                page_url=UK_PAGE + "x")
    [eu] = eu_report(make_spider(EU), FIXTURES / "eu_safety_gate_alerts/report_script.xml")
    [us] = call(make_spider(US), "parse", CPSC_URL, FIXTURES / "us_cpsc_recalls/recalls_script.json")
    for item in (uk, eu, us):
        for value in (item.title, item.text, item.product_name or ""):
            assert "alert(1)" not in value and "<" not in value and "color: red" not in value
    assert uk.title == "Product Recall: Magnetic Fidget Balls (2405-0190)"
    assert uk.text == "Magnets detach easily.\n\nHazard\n\nThe magnets can be swallowed.\nStop using the product."
    assert eu.product_name == "Fast Charger 30W"
    assert "The insulation is insufficient. Risk of electric shock." in eu.text
    assert us.title == "Magnetic Tiles Recalled"
    assert us.text.startswith("This recall involves tiles.\n\nHazard: Magnets detach.")

def test_an_edited_notice_keeps_its_id_and_changes_its_hash():
    uk_spider, eu_spider, us_spider = make_spider(UK), make_spider(EU), make_spider(US)
    url = UK_API + UK_MAGNETS
    [uk_before] = call(uk_spider, "parse_notice", url, sample_path(url), page_url=UK_PAGE + UK_MAGNETS)
    [uk_after] = call(uk_spider, "parse_notice", url, FIXTURES / "uk_opss_alerts/notice_edited.json",
                      page_url=UK_PAGE + UK_MAGNETS)
    eu_before = eu_report(eu_spider)[0].cb_kwargs["item"]
    eu_after = eu_report(eu_spider, FIXTURES / "eu_safety_gate_alerts/report_edited.xml")[0].cb_kwargs["item"]
    us_before = call(us_spider, "parse", CPSC_URL, CPSC_SAMPLE)[0]
    [us_after] = call(us_spider, "parse", CPSC_URL, FIXTURES / "us_cpsc_recalls/recalls_edited.json")
    for before, after in ((uk_before, uk_after), (eu_before, eu_after), (us_before, us_after)):
        assert before.source_id == after.source_id
        assert before.text != after.text
        assert before.content_hash() != after.content_hash()
    assert uk_after.updated == date(2024, 6, 3) and "Warning consumers of the risks" in uk_after.labels["measure_types"]
    assert eu_after.model == "VX-PD20-EU, VX-PD30-EU"
    assert us_after.model == "MBT-60, MBT-100" and us_after.updated == date(2026, 2, 5)
