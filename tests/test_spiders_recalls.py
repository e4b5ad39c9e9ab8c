"""The recall-database spiders (Health Canada, ACCC, RappelConso, openFDA, FSA) and the shared spider helpers,
on the demo samples and on recorded broken responses, through their callbacks and through a real crawl."""

from __future__ import annotations

import json
import logging
import random
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import scrapy
from scrapy.http import HtmlResponse, TextResponse, XmlResponse
from scrapy.spidermiddlewares.httperror import HttpError
from sqlalchemy import func
from sqlmodel import Session, select
from twisted.python.failure import Failure

from crawlers.base import (FAILURE_EMPTY, FAILURE_ENCODING, FAILURE_ERROR_BODY, FAILURE_HTTP_ERROR, FAILURE_JS_SHELL,
                           FAILURE_LAYOUT, FAILURE_MALFORMED, RadarSpider, classify_html, clean_text, find_gtin,
                           gtin_candidates, week_start)
from crawlers.items import NoticeItem
from spiderkit import FIXTURES, SAMPLES, crawl, sample_path, warnings
from crawlers.runner import crawl_subprocess
from crawlers.sources import load_sources
from crawlers.spiders.au_accc_recalls import AuAcccRecallsSpider as AU
from crawlers.spiders.ca_hc_recalls import CaHcRecallsSpider as CA
from crawlers.spiders.fr_dgccrf_rappelconso import FrDgccrfRappelconsoSpider as FR
from crawlers.spiders.uk_fsa_alerts import UkFsaAlertsSpider as FSA
from crawlers.spiders.us_fda_enforcement import UsFdaEnforcementSpider as FDA
from radar.db import get_engine
from radar.models import Notice
from radar.sampleserver import Route, SampleServer
from radar.summary import last_runs

SOURCES = ["au_accc_recalls", "ca_hc_recalls", "fr_dgccrf_rappelconso", "uk_fsa_alerts", "us_fda_enforcement"]

ACCC_FEED = "https://www.productsafety.gov.au/rss/feed.xml/psa_recall"
HC_FILE = "https://recalls-rappels.canada.ca/sites/default/files/opendata-donneesouvertes/HCRSAMOpenData.json"
HC_FEED = "https://recalls-rappels.canada.ca/en/feed/"
RC_RECORDS = "https://data.economie.gouv.fr/api/explore/v2.1/catalog/datasets/rappelconso-v2-gtin-espaces/records"
FSA_ALERTS = "https://data.food.gov.uk/food-alerts/id?_view=full&_sort=-created&_limit=100"
FDA_API = "https://api.fda.gov/"

_KINDS = {".json": ("application/json", TextResponse), ".xml": ("application/xml", XmlResponse),
          ".html": ("text/html; charset=utf-8", HtmlResponse)}


# -- helpers ----------------------------------------------------------------------------------------


def make_spider(cls):
    return cls(source=load_sources()[cls.name])


def respond(url: str, path: Path | None = None, *, body: bytes | None = None, request=None, status: int = 200):
    """A response as the server would send it; its class and Content-Type follow the file's kind (or the body)."""
    body = path.read_bytes() if body is None else body
    kind = path.suffix if path is not None and path.suffix in _KINDS else None
    if kind is None:
        head = body.lstrip()[:300].lower()
        kind = ".html" if b"<html" in head or head.startswith(b"<!doctype") else ".xml" if head[:1] == b"<" else ".json"
    content_type, cls = _KINDS[kind]
    return cls(url=url, body=body, headers={"Content-Type": content_type}, request=request or scrapy.Request(url),
               status=status)



def answer(request, path):
    """How crawl() answers a request: the demo sample for its URL."""
    return respond(request.url, path, request=request)


def call(spider, callback: str, url: str, path: Path | None = None, *, body: bytes | None = None, status: int = 200,
         **cb_kwargs):
    request = scrapy.Request(url, cb_kwargs=cb_kwargs)
    response = respond(url, path, body=body, request=request, status=status)
    return list(getattr(spider, callback)(response, **cb_kwargs) or ())


def notices(outputs) -> list[NoticeItem]:
    return [o for o in outputs if isinstance(o, NoticeItem)]


def requests_of(outputs) -> list[scrapy.Request]:
    return [o for o in outputs if isinstance(o, scrapy.Request)]


def failures(caplog, spider_name: str, kind: str) -> list[str]:
    return [m for m in warnings(caplog) if m.startswith(f"{spider_name}: {kind}: ")]


def hc_state(**entries):
    return {"feeds": [], "entries": dict(entries)}


def fda_page(records: list[dict], total: int) -> bytes:
    sample = json.loads((SAMPLES / "api.fda.gov/food/enforcement.json").read_text())
    sample["results"], sample["meta"]["results"] = records, {"skip": 0, "limit": 100, "total": total}
    return json.dumps(sample).encode()


# -- every new source, on its demo samples -----------------------------------------------------------


def test_sources_are_configured():
    sources = load_sources()
    assert {name: sources[name].jurisdiction for name in SOURCES} == {
        "au_accc_recalls": "juris.au", "ca_hc_recalls": "juris.ca", "fr_dgccrf_rappelconso": "juris.eu.fr",
        "uk_fsa_alerts": "juris.uk", "us_fda_enforcement": "juris.us"}
    for name in SOURCES:
        assert sources[name].licence and sources[name].attribution and sources[name].enabled
    assert sources["fr_dgccrf_rappelconso"].language == "fr"
    # The ACCC feed lists only the newest 100 recalls: it is read several times a day.
    assert sources["au_accc_recalls"].schedule.split()[1] == "*/6" and sources["au_accc_recalls"].bounds.max_records == 100


@pytest.mark.parametrize("cls, count", [(AU, 7), (CA, 9), (FR, 8), (FSA, 7), (FDA, 9)], ids=lambda v: getattr(v, "name", v))
def test_demo_samples_yield_every_notice_cleanly(cls, count, caplog):
    spider = make_spider(cls)
    with caplog.at_level(logging.INFO):
        items, fetched = crawl(spider, answer)
    assert len(items) == count
    assert len({item.source_id for item in items}) == count
    for item in items:
        assert isinstance(item, NoticeItem) and item.source == cls.name
        assert item.title and item.text and (item.published or item.updated) and item.raw_body
        assert item.url.startswith("https://") and item.language == spider.source.language
        assert "<" not in item.text and "<" not in item.title
    assert all(url.startswith("https://") for url in fetched)
    assert spider.source.bounds.min_records <= count <= spider.source.bounds.max_records
    assert warnings(caplog) == []
    assert not [r for r in caplog.records if "is not read by the spider" in r.getMessage()]


# -- entry and follow-up URLs ------------------------------------------------------------------------


def test_entry_urls_carry_a_since_date_that_stays_the_same_all_week():
    since = week_start(63)
    assert since.weekday() == 0 and 63 <= (date.today() - since).days < 70
    fda = [r.url for r in make_spider(FDA).start_requests_list()]
    assert fda == [f"{FDA_API}{kind}/enforcement.json?search=report_date:%5B{since:%Y%m%d}+TO+20991231%5D"
                   f"&sort=report_date:desc&limit=100&skip=0" for kind in ("food", "drug", "device")]
    [rc] = make_spider(FR).start_requests_list()
    assert parse_qs(urlsplit(rc.url).query) == {"where": [f"date_publication >= date'{since}'"],
                                                "order_by": ["date_publication desc"], "limit": ["100"], "offset": ["0"]}
    assert rc.url.startswith(RC_RECORDS + "?where=date_publication%20%3E%3D%20date%27")
    [fsa] = make_spider(FSA).start_requests_list()
    assert fsa.url == f"{FSA_ALERTS}&since={since}T00%3A00%3A00Z&_offset=0"
    [accc] = make_spider(AU).start_requests_list()
    assert accc.url == ACCC_FEED


def test_health_canada_reads_the_feeds_one_by_one_then_the_file():
    spider = make_spider(CA)
    items, fetched = crawl(spider, answer)
    assert fetched == [HC_FEED + "consumer-products-alerts-recalls", HC_FEED + "health-products-alerts-recalls",
                       HC_FEED + "cfia-alerts-recalls", HC_FILE]
    # The two notices only the feeds know (published after the file was built) come last, from the feeds.
    assert [i.source_id for i in items] == ["83012", "83005", "82998", "82987", "82975", "82960", "82951", "83020", "83018"]


def test_fda_pages_until_the_total_is_read_and_stops_at_max_pages(caplog):
    spider = make_spider(FDA)
    records = json.loads((SAMPLES / "api.fda.gov/food/enforcement.json").read_text())["results"]
    url = f"{FDA_API}food/enforcement.json?search=x&limit=100&skip=0"
    kwargs = {"endpoint": f"{FDA_API}food/enforcement.json", "since": "20260921"}
    outputs = call(spider, "parse", url, body=fda_page(records, 250), page=0, **kwargs)
    [follow] = requests_of(outputs)
    assert len(notices(outputs)) == 4
    assert follow.url == (f"{FDA_API}food/enforcement.json?search=report_date:%5B20260921+TO+20991231%5D"
                          f"&sort=report_date:desc&limit=100&skip=100")
    assert follow.cb_kwargs == {**kwargs, "page": 1} and follow.meta["handle_httpstatus_list"] == [404]
    assert requests_of(call(spider, "parse", url, body=fda_page(records, 250), page=2, **kwargs)) == []  # read all 250
    last = spider.source.max_pages - 1
    assert requests_of(call(spider, "parse", url, body=fda_page(records, 5000), page=last, **kwargs)) == []
    assert warnings(caplog) == [f"us_fda_enforcement: stopped at max_pages={last + 1} of {FDA_API}food/enforcement.json,"
                                f" {5000 - 100 * (last + 1)} of 5000 reports unread"]


def test_fda_search_with_no_match_is_not_a_failure(caplog):
    spider = make_spider(FDA)
    outputs = call(spider, "parse", f"{FDA_API}drug/enforcement.json?search=x", FIXTURES / "us_fda_enforcement/food_not_found.json",
                   status=404, endpoint=f"{FDA_API}drug/enforcement.json", since="20260921", page=0)
    assert outputs == [] and warnings(caplog) == []


def test_rappelconso_and_fsa_follow_their_next_page():
    rc_sample = json.loads(sample_path(RC_RECORDS).read_text())
    rc_sample["total_count"] = 150
    [follow] = requests_of(call(make_spider(FR), "parse", RC_RECORDS, body=json.dumps(rc_sample).encode(),
                                since="2026-09-21", page=0))
    assert parse_qs(urlsplit(follow.url).query)["offset"] == ["100"] and follow.cb_kwargs == {"since": "2026-09-21", "page": 1}

    fsa_sample = json.loads(sample_path(FSA_ALERTS).read_text())
    fsa_sample["items"] = (fsa_sample["items"] * 15)[:100]  # a full page: there may be more
    outputs = call(make_spider(FSA), "parse", FSA_ALERTS, body=json.dumps(fsa_sample).encode(), since="2026-09-21T00:00:00Z",
                   page=0)
    [follow] = requests_of(outputs)
    assert follow.url == f"{FSA_ALERTS}&since=2026-09-21T00%3A00%3A00Z&_offset=100"
    assert len(notices(outputs)) == 100


# -- exact fields, one notice per source -------------------------------------------------------------


def test_accc_item_fields():
    items = notices(call(make_spider(AU), "parse", ACCC_FEED, sample_path(ACCC_FEED)))
    tiles = items[0]
    assert (tiles.source_id, tiles.published) == ("2041187", date(2026, 11, 20))
    assert tiles.url == "https://www.productsafety.gov.au/recalls/kmart-australia-limited-anko-magnetic-building-tiles-60-pieces"
    assert tiles.title == "Kmart Australia Limited — Anko Magnetic Building Tiles 60 pieces"
    assert (tiles.product_name, tiles.brand, tiles.gtin) == ("Anko Magnetic Building Tiles 60 pieces", "Anko", "9351234567892")
    assert tiles.text.startswith("Product description\nSet of 60 translucent plastic building tiles")
    assert "\n\nWhat are the hazards?\nIf a child swallows more than one magnet" in tiles.text
    assert tiles.text.endswith("Identifying features\nKeycode 43251188, barcode 9351234567892, printed on the box.")
    assert tiles.category_labels == ["Children's toys"] and tiles.risk_labels == [] and tiles.country_labels == ["China"]
    assert tiles.labels == {"traders": "Kmart, Kmart online", "sale_dates": "1 March 2026 - 14 November 2026",
                            "where_sold": "All states and territories", "supplier": "Kmart Australia Limited",
                            "country_of_manufacture": "China"}
    assert tiles.raw_body.startswith(b"<item") and b"2041187 at https://www.productsafety.gov.au" in tiles.raw_body
    candles = items[1]
    assert candles.brand == "Living & Co" and candles.category_labels == ["Button batteries", "Lighting"]
    pyjamas = items[3]
    assert pyjamas.country_labels == [] and pyjamas.labels["where_sold"] == "Online"


def test_health_canada_notice_fields():
    items, _ = crawl(make_spider(CA), answer)
    by_id = {i.source_id: i for i in items}
    tiles = by_id["83012"]
    assert tiles.url == ("https://recalls-rappels.canada.ca/en/alert-recall/"
                         "certain-magnetic-building-tiles-sets-recalled-due-magnet-ingestion-hazard")
    assert tiles.title == "Certain Magnetic Building Tiles sets recalled due to magnet ingestion hazard"
    assert tiles.published is None and tiles.updated == date(2026, 11, 19)  # the file only dates the last change
    assert tiles.text == ("Product: Magnetic Building Tiles, 60 pieces\n\nIssue: Ingestion hazard\n\nWhat you should do: "
                          "Consumers should immediately stop using the recalled product, keep it away from children and "
                          "contact MagicBlocs for a full refund. Health Canada would like to remind Canadians that it is "
                          "illegal to sell products that are recalled.")
    assert (tiles.product_name, tiles.category_labels, tiles.risk_labels) == (
        "Magnetic Building Tiles, 60 pieces", ["Toys"], ["Ingestion hazard"])
    assert tiles.labels == {"organization": "Health Canada"}
    assert json.loads(tiles.raw_body)["NID"] == "83012" and tiles.raw_content_type == "application/json"
    almonds = by_id["82987"]
    assert almonds.risk_labels == ["Allergen - Peanut"] and almonds.labels == {"organization": "CFIA", "recall_class": "Class 2"}
    heater = by_id["83020"]  # only in the feed so far
    assert (heater.published, heater.updated) == (date(2026, 11, 24), None)
    assert heater.labels == {"organization": "Health Canada", "feeds": ["consumer_products"]}
    assert heater.text.startswith("WarmHome 1500 W ceramic space heater") and heater.raw_content_type == "application/rss+xml"
    # Updated more than nine weeks before the file's newest notice: not read again.
    assert "81210" not in by_id and "80105" not in by_id


def test_rappelconso_fiche_fields_stay_french():
    items = notices(call(make_spider(FR), "parse", RC_RECORDS, sample_path(RC_RECORDS), since="2026-09-21", page=0))
    hochet, chargeur = items[0], items[1]
    assert (hochet.source_id, hochet.url) == ("2026-11-0412", "https://rappel.conso.gouv.fr/fiche-rappel/21508/interne")
    assert hochet.title == "Hochet en bois Lapinou – Petitou" and hochet.language == "fr"
    assert hochet.published == date(2026, 11, 20)
    assert hochet.text.startswith("Motif du rappel : Les anneaux en silicone peuvent se détacher")
    assert ("Conduites à tenir par le consommateur : ne plus utiliser le produit ; rapporter le produit au point de vente ;"
            " contacter le service consommateur") in hochet.text
    assert (hochet.product_name, hochet.brand, hochet.model) == ("Hochet en bois Lapinou", "Petitou", "Hochet Lapinou réf. PT-HL01")
    assert (hochet.gtin, hochet.batch) == ("3760123456784", "Lot 2607A, Lot 2608B")
    assert hochet.category_labels == ["bébés-enfants (hors alimentaire)", "jouets"]
    assert hochet.risk_labels == ["étouffement"] and hochet.country_labels == ["france entière"]
    assert hochet.labels == {
        "numero_version": "1", "rappel_guid": "4ddda4cb-a043-5a82-9e56-91897cf496cb",
        "nature_juridique_rappel": "volontaire (sans arrêté préfectoral)", "zone_geographique_de_vente": "france entière",
        "distributeurs": "Amazon, Cdiscount, boutiques spécialisées puériculture",
        "conditionnements": "Hochet en hêtre avec anneaux en silicone, vendu sous boîte carton",
        "modalites_de_compensation": ["remboursement"],
        "conduites_a_tenir": ["ne plus utiliser le produit", "rapporter le produit au point de vente",
                              "contacter le service consommateur"],
        "debut_commercialisation": "2026-03-02", "fin_commercialisation": "2026-10-30", "fin_procedure_rappel": "2027-05-31"}
    # Two GTINs in the space-separated gtin field: the first valid one; models split on the ¤ separator.
    assert (chargeur.gtin, chargeur.model) == ("4056123456787", "VX-GAN65-EU, VX-GAN65-EU-W")
    assert chargeur.risk_labels == ["électrocution", "incendie"]
    by_id = {i.source_id: i for i in items}
    assert by_id["2026-11-0331"].country_labels == ["Auvergne-Rhône-Alpes"]
    assert by_id["2026-10-0289"].batch == "Numéros de série UGX9-2603-00001 à UGX9-2606-12000"
    assert by_id["2026-10-0264"].gtin == "3256220012348"  # no gtin field: read from identification_produits


def test_fsa_alert_fields_keep_allergen_and_hazard_codes():
    items = notices(call(make_spider(FSA), "parse", FSA_ALERTS, sample_path(FSA_ALERTS), since="x", page=0))
    by_id = {i.source_id: i for i in items}
    brownies = by_id["FSA-AA-52-2026"]
    assert brownies.url == "https://www.food.gov.uk/news-alerts/alert/fsa-aa-52-2026"
    assert (brownies.published, brownies.updated) == (date(2026, 11, 20), date(2026, 11, 20))
    assert brownies.product_name == "Tesco Free From Chocolate Brownies" and brownies.risk_labels == ["Milk"]
    assert brownies.country_labels == ["England", "Wales", "Northern Ireland"] and brownies.category_labels == []
    assert brownies.labels == {"alert_type": ["Allergy Alert"], "alert_codes": ["AA"], "allergen_codes": ["milk"],
                               "reporting_business": "Tesco", "status": "Published", "pack_sizes": ["4 x 45g"],
                               "best_before": ["All best before dates up to and including 12 December 2026"]}
    assert "\n\nProduct: Tesco Free From Chocolate Brownies – 4 x 45g – All best before dates" in brownies.text
    noodles = by_id["FSA-AA-50-2026"]
    assert noodles.risk_labels == ["Sesame", "Soya", "Cereals containing gluten"]
    assert noodles.labels["allergen_codes"] == ["sesame", "soya", "gluten"] and noodles.batch == "KN2609"
    cheese = by_id["FSA-PRIN-38-2026"]
    assert cheese.risk_labels == ["Listeria monocytogenes"] and cheese.labels["hazard_codes"] == ["listeria-monocytogenes"]
    bread = by_id["FSA-PRIN-37-2026"]
    assert bread.risk_labels == ["Foreign bodies", "Metal"] and bread.labels["hazard_codes"] == ["foreign-bodies", "metal"]
    assert by_id["FSA-FAFA-03-2026"].labels["alert_type"] == ["Food Alert For Action"]
    assert by_id["FSA-AA-49-2026"].batch == "L2629814"


def test_fda_recall_fields():
    spider = make_spider(FDA)
    items, _ = crawl(spider, answer)
    by_id = {i.source_id: i for i in items}
    bar = by_id["F-0187-2027"]
    assert bar.url == f'{FDA_API}food/enforcement.json?search=recall_number.exact:"F-0187-2027"'
    assert bar.title == "Lakeview Confections LLC recalls Lakeview Dark Chocolate Sea Salt Bar"
    assert bar.published == date(2026, 11, 4) and bar.product_name == "Lakeview Dark Chocolate Sea Salt Bar"
    assert bar.text.startswith("Reason for recall: Undeclared milk.")
    assert "\n\nProduct: Lakeview Dark Chocolate Sea Salt Bar, 3.5 oz (100 g)" in bar.text
    assert bar.gtin == "012345678905"  # printed grouped as "UPC 0 12345 67890 5"
    assert (bar.category_labels, bar.risk_labels, bar.country_labels) == (["Food"], ["Class I"], ["United States"])
    assert bar.labels == {
        "endpoint": "food", "event_id": "98412", "status": "Ongoing", "voluntary_mandated": "Voluntary: Firm initiated",
        "initial_firm_notification": "Press Release", "recalling_firm": "Lakeview Confections LLC",
        "firm_location": "Grand Rapids, MI, United States",
        "distribution_pattern": "Nationwide in the USA and online through Amazon.com and the firm's website.",
        "product_quantity": "18,240 bars",
        "code_info": "Best by dates 03/15/2027 through 06/30/2027, lot codes 26245 through 26290.",
        "recall_initiation_date": "2026-10-09", "center_classification_date": "2026-10-28"}
    drug = by_id["D-0044-2027"]
    assert drug.brand == "Childrens Pain Relief" and drug.category_labels == ["Drugs", "HUMAN OTC DRUG"]
    assert drug.labels["generic_names"] == ["ACETAMINOPHEN"] and drug.labels["routes"] == ["ORAL"]
    pad = by_id["Z-0318-2027"]
    assert pad.country_labels == ["China"] and pad.labels["firm_location"] == "Ningbo, China" and pad.gtin is None
    assert by_id["Z-0342-2027"].labels["device_names"] == ["Oximeter"]


# -- silent failures, broken and hostile answers -----------------------------------------------------

SILENT_FAILURES = [
    (FDA, "parse", "us_fda_enforcement/food_truncated.json", FAILURE_MALFORMED),
    (FDA, "parse", "us_fda_enforcement/food_error_200.json", FAILURE_ERROR_BODY),
    (FDA, "parse", "us_fda_enforcement/food_error_page.html", FAILURE_ERROR_BODY),
    (FR, "parse", "fr_dgccrf_rappelconso/records_truncated.json", FAILURE_MALFORMED),
    (FR, "parse", "fr_dgccrf_rappelconso/records_error_200.json", FAILURE_ERROR_BODY),
    (FR, "parse", "fr_dgccrf_rappelconso/records_js_shell.html", FAILURE_JS_SHELL),
    (FR, "parse", "fr_dgccrf_rappelconso/records_empty.json", FAILURE_EMPTY),
    (FSA, "parse", "uk_fsa_alerts/alerts_truncated.json", FAILURE_MALFORMED),
    (FSA, "parse", "uk_fsa_alerts/alerts_error_page.html", FAILURE_ERROR_BODY),
    (FSA, "parse", "uk_fsa_alerts/alerts_js_shell.html", FAILURE_JS_SHELL),
    (FSA, "parse", "uk_fsa_alerts/alerts_not_a_list.json", FAILURE_LAYOUT),
    (FSA, "parse", "uk_fsa_alerts/alerts_empty.json", FAILURE_EMPTY),
    (AU, "parse", "au_accc_recalls/feed_truncated.xml", FAILURE_MALFORMED),
    (AU, "parse", "au_accc_recalls/feed_invalid_entity.xml", FAILURE_MALFORMED),
    (AU, "parse", "au_accc_recalls/feed_empty.xml", FAILURE_EMPTY),
    (AU, "parse", "au_accc_recalls/feed_error_page.html", FAILURE_ERROR_BODY),
    (AU, "parse", "au_accc_recalls/feed_layout_changed.xml", FAILURE_LAYOUT),
    (CA, "parse", "ca_hc_recalls/file_truncated.json", FAILURE_MALFORMED),
    (CA, "parse", "ca_hc_recalls/file_js_shell.html", FAILURE_JS_SHELL),
    (CA, "parse", "ca_hc_recalls/file_error_page.html", FAILURE_ERROR_BODY),
    (CA, "parse", "ca_hc_recalls/file_not_a_list.json", FAILURE_LAYOUT),
    (CA, "parse", "ca_hc_recalls/file_wrong_keys.json", FAILURE_LAYOUT),
    (CA, "parse_feed", "ca_hc_recalls/feed_truncated.xml", FAILURE_MALFORMED),
    (CA, "parse_feed", "ca_hc_recalls/feed_empty.xml", FAILURE_EMPTY),
]
CB_KWARGS = {FDA: lambda: {"endpoint": f"{FDA_API}food/enforcement.json", "since": "20260921", "page": 0},
             FR: lambda: {"since": "2026-09-21", "page": 0}, FSA: lambda: {"since": "2026-09-21T00:00:00Z", "page": 0},
             AU: dict, CA: lambda: {"state": hc_state()}}


@pytest.mark.parametrize("cls, callback, fixture, kind", SILENT_FAILURES, ids=[f[2] for f in SILENT_FAILURES])
def test_silent_failures_yield_nothing_and_are_reported_by_name(cls, callback, fixture, kind, caplog):
    spider = make_spider(cls)
    kwargs = CB_KWARGS[cls]() | ({"feed": "consumer_products"} if callback == "parse_feed" else {})
    outputs = call(spider, callback, spider.source.url, FIXTURES / fixture, **kwargs)
    assert notices(outputs) == []
    assert failures(caplog, cls.name, kind), warnings(caplog)
    if callback == "parse_feed":  # a broken feed does not stop the run: the file is still read
        assert [r.url for r in requests_of(outputs)] == [HC_FILE]
    else:
        assert requests_of(outputs) == []


@pytest.mark.parametrize("cls", [AU, CA, FR, FSA, FDA], ids=lambda c: c.name)
def test_an_empty_body_is_reported(cls, caplog):
    spider = make_spider(cls)
    assert notices(call(spider, "parse", spider.source.url, body=b"", **CB_KWARGS[cls]())) == []
    assert failures(caplog, cls.name, FAILURE_EMPTY)


def test_records_without_a_title_are_skipped_with_a_warning(caplog):
    fda = call(make_spider(FDA), "parse", FDA_API, FIXTURES / "us_fda_enforcement/food_no_title.json", **CB_KWARGS[FDA]())
    fr = call(make_spider(FR), "parse", RC_RECORDS, FIXTURES / "fr_dgccrf_rappelconso/records_no_title.json", **CB_KWARGS[FR]())
    fsa = call(make_spider(FSA), "parse", FSA_ALERTS, FIXTURES / "uk_fsa_alerts/alerts_no_title.json", **CB_KWARGS[FSA]())
    au = call(make_spider(AU), "parse", ACCC_FEED, FIXTURES / "au_accc_recalls/feed_no_title.xml")
    ca = call(make_spider(CA), "parse", HC_FILE, FIXTURES / "ca_hc_recalls/file_no_title.json", state=hc_state())
    assert [[i.source_id for i in notices(o)] for o in (fda, fr, fsa, au, ca)] == [
        ["F-0192-2027"], ["2026-11-0398"], ["FSA-AA-52-2026"], ["2041172"], ["83005"]]
    assert warnings(caplog) == [
        "us_fda_enforcement: record F-0187-2027 has no product description, skipped",
        "fr_dgccrf_rappelconso: record 2026-11-0412 has no title, skipped",
        "uk_fsa_alerts: record FSA-AA-51-2026 has no title, skipped",
        "au_accc_recalls: record 2041187 has no title, skipped",
        "ca_hc_recalls: record 83012 has no title, skipped",
    ]


def test_markup_and_scripts_never_reach_the_text():
    fda = call(make_spider(FDA), "parse", FDA_API, FIXTURES / "us_fda_enforcement/food_script.json", **CB_KWARGS[FDA]())
    fr = call(make_spider(FR), "parse", RC_RECORDS, FIXTURES / "fr_dgccrf_rappelconso/records_script.json", **CB_KWARGS[FR]())
    fsa = call(make_spider(FSA), "parse", FSA_ALERTS, FIXTURES / "uk_fsa_alerts/alerts_script.json", **CB_KWARGS[FSA]())
    au = call(make_spider(AU), "parse", ACCC_FEED, FIXTURES / "au_accc_recalls/feed_script.xml")
    ca = call(make_spider(CA), "parse", HC_FILE, FIXTURES / "ca_hc_recalls/file_script.json", state=hc_state())
    items = [notices(o)[0] for o in (fda, fr, fsa, au, ca)]
    for item in items:
        for value in (item.title, item.text, item.product_name or "", item.brand or "", json.dumps(item.labels)):
            assert "alert(1)" not in value and "<" not in value and "color: red" not in value, value
    fda_item, fr_item, fsa_item, au_item, ca_item = items
    assert fda_item.title == "Lakeview Confections LLC recalls Lakeview Dark Chocolate Bar"
    assert fda_item.text.startswith("Reason for recall: Undeclared milk\n\nProduct: Lakeview Dark Chocolate Bar, 3.5 oz")
    assert (fr_item.title, fr_item.brand) == ("Hochet Lapinou – Petitou", "Petitou")
    assert fr_item.text.startswith("Motif du rappel : Petites pièces\n\nRisques encourus")
    assert fsa_item.title == "Tesco recalls Brownies" and fsa_item.text.startswith("Contains milk.\n\nMilk not on the label.")
    assert au_item.title == "Kmart Australia Limited — Anko Magnetic Building Tiles 60 pieces"
    assert au_item.text.startswith("Product description\nSet of 60 translucent")
    assert ca_item.title == "Magnetic tiles recalled" and ca_item.text.endswith("What you should do: Stop using. Refund")


def test_wrong_encoding_is_reported_and_the_words_survive(caplog):
    fr = notices(call(make_spider(FR), "parse", RC_RECORDS, FIXTURES / "fr_dgccrf_rappelconso/records_latin1.json",
                      **CB_KWARGS[FR]()))
    assert [i.source_id for i in fr] == ["2026-11-0412", "2026-11-0398"]
    assert fr[0].category_labels == ["bébés-enfants (hors alimentaire)", "jouets"] and fr[0].risk_labels == ["étouffement"]
    assert "\ufffd" not in fr[0].text and "Ã" not in fr[0].text
    au = notices(call(make_spider(AU), "parse", ACCC_FEED, FIXTURES / "au_accc_recalls/feed_latin1.xml"))
    assert [i.title for i in au] == ["Kmart Australia Limited - Anko Café Magnetic Building Tiles 60 pieces"]
    assert len(failures(caplog, "fr_dgccrf_rappelconso", FAILURE_ENCODING)) == 1
    assert len(failures(caplog, "au_accc_recalls", FAILURE_ENCODING)) == 1


def test_invalid_entities_decode_to_clean_text():
    [item] = notices(call(make_spider(FR), "parse", RC_RECORDS, FIXTURES / "fr_dgccrf_rappelconso/records_entities.json",
                          **CB_KWARGS[FR]()))
    assert item.product_name == "Crème visage « Teint Parfait »"  # an unknown entity is dropped, not kept as text
    assert item.text.startswith("Motif du rappel : Présence d'hydroquinone & de mercure\n\n")


def test_health_canada_file_failure_still_yields_what_the_feeds_listed(caplog):
    spider = make_spider(CA)
    state = hc_state()
    feed = HC_FEED + "consumer-products-alerts-recalls"
    [next_request] = call(spider, "parse_feed", feed, sample_path(feed), state=state, feed="consumer_products")
    assert next_request.url == HC_FILE and set(state["entries"]) == {"83020", "83012", "83005", "82951"}
    failure = Failure(HttpError(respond(HC_FILE, body=b"", status=503), "Ignoring non-200"))
    failure.request = next_request
    items = list(spider.file_failed(failure))
    assert [i.source_id for i in items] == ["83020", "83012", "83005", "82951"]
    assert items[1].published == date(2026, 11, 19) and items[1].labels == {"organization": "Health Canada",
                                                                           "feeds": ["consumer_products"]}
    assert failures(caplog, "ca_hc_recalls", FAILURE_HTTP_ERROR) == [f"ca_hc_recalls: http_error: HTTP 503 from {HC_FILE}"]


def test_health_canada_feed_failure_moves_on_to_the_next_source(caplog):
    spider = make_spider(CA)
    [first] = spider.start_requests_list()
    failure = Failure(HttpError(respond(first.url, body=b"", status=500), "Ignoring non-200"))
    failure.request = first
    [second] = spider.feed_failed(failure)
    assert second.url == HC_FEED + "health-products-alerts-recalls" and second.callback == spider.parse_feed
    assert failures(caplog, "ca_hc_recalls", FAILURE_HTTP_ERROR)


def test_new_fields_are_reported_once_per_run(caplog):
    sample = json.loads(sample_path(FSA_ALERTS).read_text())
    for alert in sample["items"][:3]:
        alert["allergenWarning"] = "May contain"
        alert["productDetails"][0]["productCode"] = "5012345678900"
    with caplog.at_level(logging.INFO):
        items = call(make_spider(FSA), "parse", FSA_ALERTS, body=json.dumps(sample).encode(), **CB_KWARGS[FSA]())
    assert len(notices(items)) == 7
    assert [r.getMessage() for r in caplog.records if "is not read" in r.getMessage()] == [
        "uk_fsa_alerts: field alert.allergenWarning is not read by the spider",
        "uk_fsa_alerts: field alert.productDetails.productCode is not read by the spider"]


_ODD = [None, 0, 12.5, True, "", [], {}, ["a", {"b": 1}], {"label": ["x"], "notation": 3}, "<script>alert(1)</script>"]


def _mutate(value, rng: random.Random):
    """The same record with about a third of its fields replaced by values of the wrong type."""
    if isinstance(value, dict):
        return {k: rng.choice(_ODD) if rng.random() < 0.3 else _mutate(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [_mutate(v, rng) for v in value]
    return value


@pytest.mark.parametrize("cls, url", [(FDA, f"{FDA_API}food/enforcement.json"), (FR, RC_RECORDS), (FSA, FSA_ALERTS),
                                      (CA, HC_FILE)], ids=[FDA.name, FR.name, FSA.name, CA.name])
def test_fields_of_the_wrong_type_never_break_a_page(cls, url):
    rng, spider = random.Random(7), make_spider(cls)
    sample = json.loads(sample_path(url).read_text())
    for _ in range(40):
        outputs = call(spider, "parse", url, body=json.dumps(_mutate(sample, rng)).encode(), **CB_KWARGS[cls]())
        for item in notices(outputs):
            assert item.source_id and item.title and "<" not in item.title + item.text


# -- the shared helpers of crawlers/base.py --------------------------------------------------------


@pytest.mark.parametrize("raw, clean", [
    ("&lt;script&gt;alert(1)&lt;/script&gt;Recall", "Recall"),
    ("&amp;lt;b&amp;gt;Doubly&amp;lt;/b&amp;gt; escaped", "Doubly escaped"),
    ("<p>One</p><p>Two<br>three</p><script>alert(1)", "One\nTwo\nthree"),
    ("&lt;style&gt;p{color: red}&lt;/style&gt;Styled", "Styled"),
    ("<!-- a > b --> Comment", "Comment"),
    ("Fish &amp; chips &nbsp; for 2 < 3 people", "Fish & chips for 2 < 3 people"),
    ("Cr&egrave;me &#233;clat &#0; &#99999999;", "Crème éclat"),
    ("&lt;img src=x onerror=alert(1)&gt;Photo", "Photo"),
])
def test_clean_text_never_returns_markup(raw, clean):
    assert clean_text(raw) == clean


def test_classify_html_tells_a_javascript_shell_from_an_error_page():
    shells = [FIXTURES / "ca_hc_recalls/file_js_shell.html", FIXTURES / "eu_safety_gate_alerts/report_js_shell.html"]
    errors = [FIXTURES / "uk_fsa_alerts/alerts_error_page.html", FIXTURES / "us_cpsc_recalls/recalls_error_page.html",
              FIXTURES / "uk_opss_alerts/feed_error_page.html"]
    assert [classify_html(p.read_bytes()) for p in shells] == [FAILURE_JS_SHELL] * 2
    assert [classify_html(p.read_bytes()) for p in errors] == [FAILURE_ERROR_BODY] * 3
    # Scripts on a page with an error message in words are still an error page, and a page of prose is not a shell.
    assert classify_html(b"<html><head><script>ga()</script></head><body><h1>Not Found</h1></body></html>") == FAILURE_ERROR_BODY
    assert classify_html(b"<html><body><script>x()</script>" + b"<p>A long page of text.</p>" * 20 + b"</body></html>") \
        == FAILURE_ERROR_BODY


def test_gtins_need_a_right_check_digit():
    assert find_gtin("Lot 20240115, barcode 5 060458 122339") == "5060458122339"
    assert gtin_candidates("4262398110464 4262398110457", "UPC 0-12345-67890-5") == [
        "4262398110464", "4262398110457", "012345678905"]
    assert find_gtin("10000296", "4262398110465", None) is None  # an id and a mistyped barcode


def test_load_json_and_load_xml_report_what_came_back(caplog):
    spider = RadarSpider(name="probe", source=load_sources()["us_fda_enforcement"])
    url = "https://example.org/data"
    assert spider.load_json(respond(url, body=b'{"a": "caf\xe9"}')) == {"a": "café"}
    assert spider.load_json(respond(url, body=b"<?xml version='1.0'?><error/>")) is None
    assert spider.load_json(respond(url, body=b"null")) is None
    xml = spider.load_xml(respond(url, body=b'<?xml version="1.0" encoding="utf-8"?><rss><t>Caf\xe9</t></rss>'), "rss")
    assert xml.xpath("//t/text()").get() == "Café"
    assert spider.load_xml(respond(url, body=b"<feed/>"), ("rss", "channel")) is None
    assert [m.split(": ", 2)[1] for m in warnings(caplog)] == [
        FAILURE_ENCODING, FAILURE_ERROR_BODY, FAILURE_EMPTY, FAILURE_ENCODING, FAILURE_LAYOUT]


# -- end to end: the real crawler, a real HTTP server, a real database --------------------------------


def test_crawl_the_new_sources_from_the_samples_then_a_broken_one(sqlite_url):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        result = crawl_subprocess(SOURCES, mirror=server.url, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        with Session(engine) as session:
            counts = dict(session.exec(select(Notice.source, func.count()).group_by(Notice.source)).all())
        assert counts == {"au_accc_recalls": 7, "ca_hc_recalls": 9, "fr_dgccrf_rappelconso": 8, "uk_fsa_alerts": 7,
                          "us_fda_enforcement": 9}
        runs = last_runs(engine)
        assert {name: runs[name].status for name in SOURCES} == dict.fromkeys(SOURCES, "ok")

        server.add_route("/data.food.gov.uk/food-alerts/id",
                         Route(body=(FIXTURES / "uk_fsa_alerts/alerts_js_shell.html").read_bytes(), content_type="text/html"))
        result = crawl_subprocess(SOURCES, mirror=server.url, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
    runs = last_runs(engine)
    assert runs["uk_fsa_alerts"].status == "failed"
    assert any(m.startswith(FAILURE_JS_SHELL) for m in runs["uk_fsa_alerts"].messages), runs["uk_fsa_alerts"].messages
    assert all(runs[name].status == "ok" and runs[name].new == 0 for name in SOURCES if name != "uk_fsa_alerts")
    with Session(engine) as session:
        french = session.exec(select(Notice).where(Notice.source == "fr_dgccrf_rappelconso")).first()
    assert french.language == "fr" and "é" in french.text and french.url.startswith("https://rappel.conso.gouv.fr/")
