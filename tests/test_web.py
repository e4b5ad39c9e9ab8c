"""The web app over HTTP (Starlette's TestClient): login, search, facets, notices, review, security."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
from datetime import date, datetime, timezone

import pytest
from click.testing import CliRunner

from crawlers.items import NoticeItem
from radar.db import session_scope
from radar.models import (
    Classification,
    ImpactEstimate,
    Incident,
    IncidentMember,
    Proposal,
    Review,
    SavedSearch,
    SourceRun,
    Subscription,
)
from radar.settings import REPO_ROOT
from radar.store import store_items

# Starlette 1.x asks for httpx2 in its TestClient; httpx still works and is what the project installs.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PASSWORDS = {"vera": "viewer-password", "rex": "reviewer-password", "ada": "admin-password"}
HOSTILE_TITLE = '<img src=x onerror="alert(1)"> Doll with phthalates'
HOSTILE_TEXT = 'The doll contains DEHP (0.5 % by weight). <script>alert("xss")</script> Sold online.'


def _item(sid, title, text, day, source="eu_safety_gate_alerts", **extra):
    return NoticeItem(source=source, source_id=sid, url=f"https://example.org/{sid}", title=title, text=text,
                      published=day, raw_body=f"<html><body>{title}</body></html>".encode(), raw_content_type="text/html",
                      **extra)


def _finding(notice_id, version, axis, value, text=None, word=None, field="text", role=None, method="text"):
    start = end = None
    if text is not None and word is not None:
        start = text.index(word)
        end = start + len(word)
    return Classification(notice_id=notice_id, notice_version=version, axis=axis, value=value, method=method, field=field,
                          evidence=word or value, start=start, end=end, role=role, pipeline_version="test-1")


def policy_copy(tmp_path, monkeypatch):
    """A copy of the bundled policy file, made the one in force through RADAR_POLICY_RULES_PATH."""
    from radar import settings

    path = tmp_path / "policy" / "policy_rules.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "config" / "policy_rules.yml", path)
    monkeypatch.setenv("RADAR_POLICY_RULES_PATH", str(path))
    settings.get_settings.cache_clear()
    return path


def make_proposal(session, policy_path, evidence: list[int]) -> Proposal:
    """A new-rule proposal drafted against the policy file at `policy_path`, as radar.drafting would store it."""
    from radar.drafting import rule_dict, text_hash, unified_diff
    from radar.rules import Rule, dump_rules, parse_rules

    before = policy_path.read_text(encoding="utf-8")
    ruleset = parse_rules(before)
    template = rule_dict(ruleset.rules[0])
    template.update(id="rule.toys.web_test_magnets", title="Magnetic toys with small loose magnets <b>web test</b>",
                    policy_class="policy.prohibited", markets=["DE"], categories=["cat.toys.magnetic"],
                    match={"include": {"en": ["magnetic building set", "neodymium magnet toy"]}},
                    action={"type": "block"})
    rule = Rule.model_validate(template)
    after = dump_rules(list(ruleset.rules) + [rule])
    proposal = Proposal(
        key="new_rule:rule.toys.web_test_magnets:test", kind="new_rule", rule_id=rule.id, title="Block magnetic building sets in DE",
        rationale="Three notices in 2024 about magnets that detach.\nA child may swallow them.", diff=unified_diff(before, after),
        rule=rule_dict(rule), base_hash=text_hash(before), evidence_notice_ids=evidence,
    )
    session.add(proposal)
    session.flush()
    session.add(ImpactEstimate(
        proposal_id=proposal.id, catalogue="catalogue.parquet", listings_scanned=120_000, hits=340, already_hit=40,
        newly_hit=300, exact=False, method="stratified sample", hits_low=290.0, hits_high=395.5,
        details={"by_market": {"DE": {"hits": 250, "newly_hit": 220, "already_hit": 30},
                               "AT": {"hits": 90, "newly_hit": 80, "already_hit": 10}},
                 "by_category": {"cat.toys.magnetic": 300, "cat.toys": 40},
                 "examples": [{"id": "L-1", "title": "Magnetic building set <script>x</script>", "market": "DE"}]},
    ))
    return proposal


def seed(engine, policy_path=None) -> dict[str, int]:
    """A small archive: five notices (one hostile, one edited), findings, an incident, runs, a proposal."""
    t1 = "The USB charger can overheat and catch fire while charging phones."
    t1b = t1 + " Sold in Germany by several online shops."
    ids: dict[str, int] = {}
    with session_scope(engine) as session:
        result = store_items(session, [
            _item("n1", "USB charger overheats", t1, date(2024, 5, 2)),
            _item("n2", "Wireless chargers recalled", "Chargers sold online; risk of electric shock.", date(2023, 11, 20),
                  source="us_cpsc_recalls", gtin="04012345678901"),
            _item("n3", "Magnetic building set", "Small magnets detach; a child may swallow them. Sold in Germany.", date(2024, 1, 15),
                  category_labels=["Toys"], risk_labels=["Choking"], labels={"risk_level": "serious", "measures": ["recall"]}),
            _item("n4", HOSTILE_TITLE, HOSTILE_TEXT, None, gtin="5012345678900"),
            _item("n5", '=HYPERLINK("http://evil.example") charger cable', "Made in Germany; no charger fault found.", date(2022, 6, 1),
                  source="us_cpsc_recalls"),
        ])
        for sid, notice_id in zip(("n1", "n2", "n3", "n4", "n5"), result.notice_ids):
            ids[sid] = notice_id
        # The source edits n1: version 2 with one more sentence.
        store_items(session, [_item("n1", "USB charger overheats", t1b, date(2024, 5, 2))])
        session.add_all([
            _finding(ids["n1"], 2, "hazard", "hazard.fire", t1b, "fire"),
            _finding(ids["n1"], 2, "category", "cat.electrical.chargers", t1b, "USB charger"),
            _finding(ids["n1"], 2, "jurisdiction", "juris.eu.de", t1b, "Germany", role="sold_in"),
            _finding(ids["n1"], 2, "category", "cat.electrical.chargers", "USB charger overheats", "charger", field="title"),
            _finding(ids["n2"], 1, "jurisdiction", "juris.eu.fr", role="notified_by", method="source_label", field="country_labels"),
            _finding(ids["n2"], 1, "category", "cat.electrical.chargers"),
            _finding(ids["n2"], 1, "hazard", "hazard.electric_shock"),
            _finding(ids["n3"], 1, "jurisdiction", "juris.eu.de", role="sold_in"),
            _finding(ids["n3"], 1, "category", "cat.toys.magnetic", method="source_label", field="category_labels"),
            _finding(ids["n3"], 1, "hazard", "hazard.choking"),
            _finding(ids["n3"], 1, "policy", "policy.prohibited"),
            _finding(ids["n4"], 1, "jurisdiction", "juris.eu.pl", role="notified_by"),
            _finding(ids["n4"], 1, "category", "cat.toys"),
            _finding(ids["n4"], 1, "hazard", "hazard.chemical", HOSTILE_TEXT, "DEHP"),
            _finding(ids["n5"], 1, "jurisdiction", "juris.eu.de", role="origin"),
            _finding(ids["n5"], 1, "category", "cat.electrical"),
        ])
        from radar.models import Notice

        for key in ("n1", "n2", "n3", "n4", "n5"):
            notice = session.get(Notice, ids[key])
            notice.classified_version = notice.version
            session.add(notice)
        incident = Incident(key="brand-model:acme:x1", title="ACME X1 charger", method="brand_model", confidence=0.9)
        session.add(incident)
        session.flush()
        session.add_all([IncidentMember(incident_id=incident.id, notice_id=ids["n1"], method="brand_model", confidence=0.9),
                         IncidentMember(incident_id=incident.id, notice_id=ids["n2"], method="brand_model", confidence=0.9)])
        now = datetime.now(timezone.utc)
        session.add_all([
            SourceRun(source="eu_safety_gate_alerts", started_at=now, finished_at=now, status="ok", records=3, new=3),
            SourceRun(source="us_cpsc_recalls", started_at=now, finished_at=now, status="failed", records=0, errors=1,
                      messages=["parse error near <b>bold</b> & friends"]),
        ])
        session.add(Subscription(name="EMEA toys", recipients=["policy@example.org"], markets=["DE"], categories=["cat.toys"]))
        if policy_path is not None:
            ids["proposal"] = make_proposal(session, policy_path, [ids["n3"], 999_999]).id
    return ids


_HASHES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch):
    """Real argon2 with the smallest cost: a login is checked the same way in a few milliseconds."""
    from radar import auth

    monkeypatch.setattr(auth, "ARGON2_PARAMS", {"time_cost": 1, "memory_cost": 1024, "parallelism": 1})
    auth._hasher.cache_clear()
    auth._dummy_hash.cache_clear()
    yield
    auth._hasher.cache_clear()
    auth._dummy_hash.cache_clear()


def add_test_users(engine) -> None:
    """vera (viewer), rex (reviewer), ada (admin); argon2 takes a quarter second a hash, so hash once per run."""
    from radar.auth import hash_password
    from radar.models import User

    with session_scope(engine) as session:
        for name, role in (("vera", "viewer"), ("rex", "reviewer"), ("ada", "admin")):
            if name not in _HASHES:
                _HASHES[name] = hash_password(PASSWORDS[name])
            session.add(User(username=name, email=f"{name}@example.org", password_hash=_HASHES[name], role=role))


def prepare(engine, tmp_path, monkeypatch):
    policy = policy_copy(tmp_path, monkeypatch)
    ids = seed(engine, policy)
    add_test_users(engine)
    return engine, ids, policy


@pytest.fixture
def app_engine(engine, tmp_path, monkeypatch):
    """The seeded archive on SQLite and on PostgreSQL: for what the database answers."""
    return prepare(engine, tmp_path, monkeypatch)


@pytest.fixture
def lite_engine(sqlite_url, tmp_path, monkeypatch):
    """The seeded archive on SQLite only: for HTTP behaviour that no query decides (login, CSRF, forms)."""
    from radar.db import get_engine

    return prepare(get_engine(sqlite_url), tmp_path, monkeypatch)


def make_client(engine):
    from fastapi.testclient import TestClient

    from radar.web.app import create_app

    return TestClient(create_app(engine), follow_redirects=False)


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF token field"
    return found.group(1)


def login(client, username: str, password: str | None = None):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "next": "/search", "csrf_token": token(page.text)})


def logged_in(engine, username: str):
    client = make_client(engine)
    assert login(client, username).status_code == 303
    return client


@pytest.fixture
def web(app_engine):
    engine, ids, policy = app_engine
    return logged_in(engine, "rex"), ids, policy


@pytest.fixture
def web_lite(lite_engine):
    engine, ids, policy = lite_engine
    return logged_in(engine, "rex"), ids, policy


@pytest.fixture
def viewer(lite_engine):
    engine, ids, _ = lite_engine
    return logged_in(engine, "vera"), ids


def hit_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<h3><a href="/notices/(\d+)">', html)]


# -- login and sessions -------------------------------------------------------------------------


def test_pages_need_a_login_and_the_api_a_password(lite_engine):
    client = make_client(lite_engine[0])
    response = client.get("/search?q=charger")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fsearch%3Fq%3Dcharger"
    assert client.get("/notices/1").status_code == 303
    api = client.get("/api/search")
    assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Basic")
    assert client.get("/api/search", auth=("vera", PASSWORDS["vera"])).status_code == 200
    assert client.get("/api/search", auth=("vera", "wrong")).status_code == 401


def test_login_wrong_password_then_right_one_goes_where_asked(lite_engine):
    client = make_client(lite_engine[0])
    page = client.get("/login?next=/proposals")
    bad = client.post("/login", data={"username": "rex", "password": "nope", "next": "/proposals", "csrf_token": token(page.text)})
    assert bad.status_code == 200 and "Wrong user name or password" in bad.text
    assert client.get("/search").status_code == 303  # still logged out
    good = client.post("/login", data={"username": "rex", "password": PASSWORDS["rex"], "next": "/proposals",
                                       "csrf_token": token(bad.text)})
    assert good.status_code == 303 and good.headers["location"] == "/proposals"
    assert client.get("/proposals").status_code == 200


def test_login_never_redirects_off_site(lite_engine):
    client = make_client(lite_engine[0])
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        page = client.get("/login")
        response = client.post("/login", data={"username": "vera", "password": PASSWORDS["vera"], "next": target,
                                               "csrf_token": token(page.text)})
        assert response.headers["location"] == "/search"
        client.post("/logout", data={"csrf_token": token(client.get("/search").text)})


def test_session_expires(lite_engine, monkeypatch):
    from radar import settings

    monkeypatch.setenv("RADAR_WEB_SESSION_MAX_AGE", "1")
    settings.get_settings.cache_clear()
    client = make_client(lite_engine[0])
    assert login(client, "vera").status_code == 303
    assert client.get("/search").status_code == 200
    time.sleep(1.6)
    expired = client.get("/search")
    assert expired.status_code == 303 and expired.headers["location"].startswith("/login")


def test_logout_ends_the_session(web_lite):
    client, _, _ = web_lite
    page = client.get("/search")
    assert client.post("/logout", data={"csrf_token": token(page.text)}).status_code == 303
    assert client.get("/search").status_code == 303


def test_role_change_applies_without_a_new_login(viewer, lite_engine):
    from radar.auth import set_role

    client, ids = viewer
    assert "Only reviewers and admins decide" in client.get(f"/proposals/{ids['proposal']}").text
    set_role(lite_engine[0], "vera", "reviewer")
    assert 'action="/proposals/%d/decide"' % ids["proposal"] in client.get(f"/proposals/{ids['proposal']}").text


# -- CSRF -----------------------------------------------------------------------------------------


def test_forms_without_or_with_a_wrong_csrf_token_are_refused(web_lite):
    client, ids, policy = web_lite
    before = policy.read_text()
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    decide = client.post(f"/proposals/{ids['proposal']}/decide", data={"decision": "accept", "comment": "ok"})
    assert decide.status_code == 403 and "security token" in decide.text
    assert client.post("/searches", data={"name": "x", "search": "q=charger", "csrf_token": ""}).status_code == 403
    assert policy.read_text() == before
    assert client.get("/search").status_code == 200  # still logged in: a refused form changes nothing


def test_login_form_needs_the_token_too(lite_engine):
    client = make_client(lite_engine[0])
    client.get("/login")
    response = client.post("/login", data={"username": "rex", "password": PASSWORDS["rex"]})
    assert response.status_code == 403
    assert client.get("/search").status_code == 303


def test_the_token_changes_at_login(lite_engine):
    client = make_client(lite_engine[0])
    before = token(client.get("/login").text)
    login(client, "vera")
    after = token(client.get("/search").text)
    assert before != after
    assert client.post("/logout", data={"csrf_token": before}).status_code == 403


# -- search ---------------------------------------------------------------------------------------


def test_search_highlights_matches_and_counts_facets(web):
    client, ids, _ = web
    page = client.get("/search?q=charger")
    assert page.status_code == 200
    assert hit_ids(page.text) == [ids["n1"], ids["n2"], ids["n5"]]
    assert "<mark>charger</mark>" in page.text or "<mark>Charger</mark>" in page.text
    facet = re.search(r'<section class="facet" id="facet-market">(.*?)</section>', page.text, re.S).group(1)
    # n5 was only made in Germany (role origin), so Germany counts n1 alone.
    assert re.search(r'market=juris.eu.de[^"]*"[^>]*>[^<]+</a>\s*<span class="count">1</span>', facet)
    assert re.search(r'market=juris.eu.fr[^"]*"[^>]*>[^<]+</a>\s*<span class="count">1</span>', facet)
    # Opening the facet narrows the results; its link is the shareable URL of that search.
    link = re.search(r'href="(/search\?q=charger&amp;market=juris.eu.de)"', facet).group(1).replace("&amp;", "&")
    narrowed = client.get(link)
    assert hit_ids(narrowed.text) == [ids["n1"]]
    assert "market: " in narrowed.text  # the filter is shown and removable


def test_facets_policy_and_gtin_filter_the_results(web_lite):
    client, ids, _ = web_lite
    assert hit_ids(client.get("/search?policy=policy.prohibited").text) == [ids["n3"]]
    assert sorted(hit_ids(client.get("/search?gtin=yes").text)) == sorted([ids["n2"], ids["n4"]])
    assert hit_ids(client.get("/search?q=charger&gtin=no").text) == [ids["n1"], ids["n5"]]
    page = client.get("/search?q=charger&gtin=no")
    gtin = re.search(r'<section class="facet" id="facet-gtin">(.*?)</section>', page.text, re.S).group(1)
    assert re.findall(r'<span class="count">([^<]+)</span>', gtin) == ["0", "2"]


def test_facet_counts_agree_with_search_on_both_databases(app_engine):
    from radar.search import Filters, search
    from radar.web.facets import facet_counts

    engine, ids, _ = app_engine
    facets = facet_counts(engine, "", Filters())
    assert facets.total == 5 and not facets.approximate
    by = {name: {v.value: v.count for v in values} for name, values in facets.values.items()}
    assert by["source"] == {"eu_safety_gate_alerts": 3, "us_cpsc_recalls": 2}
    # A group counts its members' notices (juris.eu: n1 to n4; n5's product only comes from Germany):
    # each count is what a filter on the value finds.
    assert by["market"] == {"juris.eu": 4, "juris.eu.de": 2, "juris.eu.fr": 1, "juris.eu.pl": 1}
    assert by["policy"] == {"policy.prohibited": 1}
    assert {v.value: v.count for v in facets.years} == {"2024": 2, "2023": 1, "2022": 1, "": 1}
    assert facets.gtin == {"yes": 2, "no": 3}
    filter_of = {"market": "jurisdictions", "category": "categories", "hazard": "hazards", "policy": "policies"}
    for query in ("", "charger", "-charger"):
        counted = facet_counts(engine, query, Filters())
        for name, key in filter_of.items():
            for v in counted.values[name]:
                assert search(engine, query, Filters(**{key: [v.value]})).total == v.count, (query, name, v.value)
    assert "cat" not in by["category"] and "juris" not in by["market"]  # an axis's prefix is not a value
    assert [h.id for h in search(engine, "charger", Filters(has_gtin=False)).hits] == [ids["n1"], ids["n5"]]
    assert [h.id for h in search(engine, "", Filters(policies=["policy"])).hits] == [ids["n3"]]
    sampled = facet_counts(engine, "", Filters(), sample_above=2)
    assert sampled.approximate and sampled.total == 5


SEARCHES = [
    ("", {}), ("charger", {}), ("charger", {"jurisdictions": ["juris.eu.de"]}), ("", {"jurisdictions": ["juris.eu"]}),
    ("", {"categories": ["cat.toys"]}), ("", {"hazards": ["hazard.choking"]}), ("-charger", {}),
    ('"electric shock"', {}), ("charger", {"sources": ["us_cpsc_recalls"], "since": date(2022, 1, 1)}),
    ("magnets OR phthalates", {"categories": ["cat"]}), ("", {"until": date(2023, 12, 31)}),
    ("", {"policies": ["policy"], "jurisdictions": ["juris.eu"]}), ("charger", {"has_gtin": True}),
]


def test_a_page_its_total_and_the_count_agree_with_the_whole_result(app_engine):
    """Pages are found one way (EXISTS, or id lists on the FTS row) and totals counted another (id lists,
    or on the FTS row alone): every page is a slice of the whole result and every total its length."""
    from radar.search import Filters, count_matching, search

    engine = app_engine[0]
    for query, given in SEARCHES:
        for sort in ("date", "relevance"):
            whole = search(engine, query, Filters(**given), sort=sort, limit=1000)
            ids = [h.id for h in whole.hits]
            assert whole.total == len(ids) == count_matching(engine, query, Filters(**given)), (query, given)
            for offset in (0, 1, 2, 5):
                page = search(engine, query, Filters(**given), sort=sort, limit=2, offset=offset)
                assert [h.id for h in page.hits] == ids[offset:offset + 2], (query, given, sort, offset)
                assert page.total == len(ids), (query, given, sort, offset)
    assert search(engine, "", Filters(categories=["cat.toys"])).total > 0  # the list exercises real matches


def test_a_large_total_is_estimated_and_said_to_be(lite_engine, monkeypatch):
    from conftest import bulk_archive

    engine = lite_engine[0]
    bulk_archive(engine, 3000)
    monkeypatch.setenv("RADAR_WEB_COUNT_ESTIMATE_ABOVE", "200")
    from radar.settings import get_settings

    get_settings.cache_clear()
    client = logged_in(engine, "vera")
    page = client.get("/search?category=cat.toys")
    assert page.status_code == 200 and " of about 1," in page.text
    api = client.get("/api/search?category=cat.toys").json()
    assert api["total_approximate"] is True and 900 <= api["total"] <= 1100
    monkeypatch.setenv("RADAR_WEB_COUNT_ESTIMATE_ABOVE", "0")  # 0: every total exact
    get_settings.cache_clear()
    exact = client.get("/api/search?category=cat.toys").json()
    assert exact["total_approximate"] is False and exact["total"] == 1000 + 2  # the seed has two toys


def test_slow_counting_is_abandoned_at_the_time_limit(app_engine):
    from sqlalchemy.exc import OperationalError

    from radar.web.facets import _interrupted, _time_limit

    engine = app_engine[0]
    slow = ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM (SELECT i FROM r LIMIT 500000000) x"
            if engine.dialect.name == "sqlite" else "SELECT pg_sleep(5)")
    from sqlalchemy import text

    started = time.perf_counter()
    with engine.connect() as connection:
        with pytest.raises(OperationalError) as caught:
            with _time_limit(connection, engine, 0.1):
                connection.execute(text(slow)).all()
    assert _interrupted(caught.value) and time.perf_counter() - started < 3


HOSTILE_QUERIES = [
    'charger" OR 1=1 --', "charger'; DROP TABLE notice; --", "NEAR(charger fire)", "title:charger", "charger*",
    '"unterminated', "(charger", "<script>alert(1)</script>", "%' OR '1'='1", "\\", "-", "ÄÖÜ ß", "a" * 400,
]


def test_hostile_queries_are_safe_and_sensible(web):
    client, ids, _ = web
    for query in HOSTILE_QUERIES:
        page = client.get("/search", params={"q": query})
        assert page.status_code == 200, query
        assert "<script>alert(1)</script>" not in page.text
        assert client.get("/api/search", params={"q": query}).status_code == 200, query
    assert hit_ids(client.get("/search?q=charger").text) == [ids["n1"], ids["n2"], ids["n5"]]  # nothing was dropped


def test_hostile_queries_find_the_words_they_contain(web_lite):
    client, ids, _ = web_lite
    assert hit_ids(client.get("/search", params={"q": 'charger" fire'}).text) == [ids["n1"]]
    assert hit_ids(client.get("/search", params={"q": "charger'; DROP TABLE notice; --"}).text) == []
    assert hit_ids(client.get("/search", params={"q": "magnets OR phthalates"}).text) == [ids["n3"], ids["n4"]]
    api = client.get("/api/search", params={"q": "script alert"}).json()
    assert [r["id"] for r in api["results"]] == [ids["n4"]]


def test_bad_parameters_give_a_clear_message(web_lite):
    client, _, _ = web_lite
    for url, message in (("/search?since=yesterday", "not a date"), ("/search?sort=random", "sort must be"),
                         ("/search?page=0", "page must be"), ("/search?market=XX", "unknown market"),
                         ("/search?since=2024-02-01&until=2024-01-01", "after until")):
        page = client.get(url)
        assert page.status_code == 400 and message in page.text, url
    assert client.get("/api/search?since=nope").status_code == 422
    assert client.get("/api/search?market=XX").status_code == 400


def test_sort_pagination_and_shareable_urls(web_lite, monkeypatch):
    from radar import settings

    client, ids, _ = web_lite
    monkeypatch.setenv("RADAR_SEARCH_PAGE_SIZE", "2")
    settings.get_settings.cache_clear()
    first = client.get("/search")
    assert hit_ids(first.text) == [ids["n1"], ids["n3"]]
    assert "1–2 of 5" in first.text
    next_url = re.search(r'rel="next" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    assert next_url == "/search?page=2"
    second = client.get(next_url)
    assert hit_ids(second.text) == [ids["n2"], ids["n5"]]
    by_relevance = client.get("/search?q=charger&sort=relevance&page=1")
    assert set(hit_ids(by_relevance.text)) <= {ids["n1"], ids["n2"], ids["n5"]}
    # The same URL gives the same page to anyone logged in.
    other = make_client(client.app.state.engine)
    login(other, "vera")
    assert hit_ids(other.get(next_url).text) == hit_ids(second.text)


def test_csv_and_json_exports(web):
    client, ids, _ = web
    response = client.get("/search.csv?q=charger")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["id"]) for r in rows] == [ids["n1"], ids["n2"], ids["n5"]]
    cable = next(r for r in rows if int(r["id"]) == ids["n5"])
    assert cable["title"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it
    assert "\x02" not in response.text and rows[0]["page"].endswith(f"/notices/{ids['n1']}")
    data = json.loads(client.get("/search.json?q=charger&market=juris.eu.de").text)
    assert [r["id"] for r in data["results"]] == [ids["n1"]]
    assert data["params"] == {"market": ["juris.eu.de"]}


def test_saved_searches_can_be_followed(web, app_engine):
    from sqlmodel import Session, select

    client, ids, _ = web
    page = client.get("/search?q=charger&market=juris.eu.de")
    saved = client.post("/searches", data={"name": "Chargers in DE", "search": "q=charger&market=juris.eu.de", "follow": "1",
                                           "csrf_token": token(page.text)})
    assert saved.status_code == 303
    listing = client.get("/searches")
    assert "Chargers in DE" in listing.text and "following" in listing.text
    with Session(app_engine[0]) as session:
        row = session.exec(select(SavedSearch)).one()
    assert (row.query, row.params, row.follow) == ("charger", {"market": ["juris.eu.de"]}, True)
    from radar.web.query import SearchParams

    assert SearchParams.from_saved(row.query, row.params).url() == "/search?q=charger&market=juris.eu.de"
    assert client.post(f"/searches/{row.id}/follow", data={"follow": "0", "csrf_token": token(listing.text)}).status_code == 303
    with Session(app_engine[0]) as session:
        assert session.get(SavedSearch, row.id).follow is False
    # Another user can neither change nor delete it.
    other = logged_in(app_engine[0], "vera")
    other_token = token(other.get("/searches").text)
    assert other.post(f"/searches/{row.id}/delete", data={"csrf_token": other_token}).status_code == 404
    assert client.post(f"/searches/{row.id}/delete", data={"csrf_token": token(listing.text)}).status_code == 303
    assert "No saved searches yet" in client.get("/searches").text


# -- notices --------------------------------------------------------------------------------------


def test_notice_page_shows_findings_labels_versions_incident_and_licence(web):
    client, ids, _ = web
    page = client.get(f"/notices/{ids['n1']}")
    assert page.status_code == 200
    html = page.text
    assert re.search(r'class="finding-mark f-hazard" href="#finding-\d+"[^>]*><mark>fire</mark>', html)
    assert "<mark>Germany</mark>" in html and "sold in" in html
    assert 'id="finding-' in html and "the words “fire” in the text" in html
    assert "Version 1 → 2" in html and "Sold in Germany by several online shops." in html  # the diff
    assert f'/notices/{ids["n2"]}' in html and "ACME X1 charger" in html  # the same incident
    assert "Safety Gate" in html and "Licence:" in html  # the source's attribution
    assert 'href="https://example.org/n1"' in html and f"/notices/{ids['n1']}/raw" in html
    labelled = client.get(f"/notices/{ids['n3']}").text
    assert "The source's own labels" in labelled and "serious" in labelled and "recall" in labelled
    assert "the source's own label" in labelled
    assert client.get("/notices/999999").status_code == 404


def test_notice_text_with_html_and_script_is_shown_as_text(web):
    client, ids, _ = web
    html = client.get(f"/notices/{ids['n4']}").text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; Doll" in html
    assert "<mark>DEHP</mark>" in html  # the finding inside hostile text is still placed
    results = client.get("/search?q=doll").text
    assert "<img src=x" not in results and "<script>alert" not in results
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; Doll" in results  # the title, as text
    headers = client.get(f"/notices/{ids['n4']}").headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"


def test_raw_snapshot_is_a_text_download(web_lite):
    client, ids, _ = web_lite
    raw = client.get(f"/notices/{ids['n4']}/raw")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert raw.headers["content-security-policy"].startswith("sandbox")
    assert raw.content.startswith(b"<html><body><img src=x")
    old = client.get(f"/notices/{ids['n1']}/versions/1/raw")
    assert old.status_code == 200 and b"USB charger" in old.content
    assert client.get(f"/notices/{ids['n1']}/versions/7/raw").status_code == 404


def test_compare_any_two_versions(web_lite):
    client, ids, _ = web_lite
    page = client.get(f"/notices/{ids['n1']}?a=2&b=1")
    assert "Version 2 → 1" in page.text


# -- proposals and review -------------------------------------------------------------------------


def test_proposal_list_and_review_page(web):
    client, ids, _ = web
    listing = client.get("/proposals")
    assert "Block magnetic building sets in DE" in listing.text and re.search(r">340\b", listing.text)
    assert "No proposals with status accepted" in client.get("/proposals?status=accepted").text
    page = client.get(f"/proposals/{ids['proposal']}").text
    assert '<table class="diff">' in page and 'class="insert"' in page
    assert "rule.toys.web_test_magnets" in page
    assert "Magnetic toys with small loose magnets &lt;b&gt;web test&lt;/b&gt;" in page
    assert f'/notices/{ids["n3"]}' in page and "Notices no longer stored: 999999" in page
    assert "<svg" in page and 'class="newly"' in page and "hits by market" in page
    assert "Magnetic building set &lt;script&gt;x&lt;/script&gt;" in page  # an example listing, escaped
    assert "290 – 396" in page or "290 – 395" in page


def test_viewer_cannot_decide(viewer, lite_engine):
    client, ids = viewer
    policy = lite_engine[2]
    before = policy.read_text()
    page = client.get(f"/proposals/{ids['proposal']}")
    assert "Only reviewers and admins decide proposals" in page.text and 'name="decision"' not in page.text
    response = client.post(f"/proposals/{ids['proposal']}/decide",
                           data={"decision": "accept", "comment": "", "csrf_token": token(page.text)})
    assert response.status_code == 403
    assert policy.read_text() == before


def test_reviewer_accepts_and_the_policy_file_changes(web, app_engine):
    pytest.importorskip("radar.review")
    from sqlmodel import Session, select

    client, ids, policy = web
    before = policy.read_text()
    page = client.get(f"/proposals/{ids['proposal']}")
    response = client.post(f"/proposals/{ids['proposal']}/decide",
                           data={"decision": "accept", "comment": "Clear evidence.", "csrf_token": token(page.text)})
    assert response.status_code == 303, response.text
    after = policy.read_text()
    assert after != before and "rule.toys.web_test_magnets" in after and "rule.toys.web_test_magnets" not in before
    done = client.get(f"/proposals/{ids['proposal']}").text
    assert "Accepted: proposal" in done and "<strong>accept</strong> by rex" in done and "nothing left to decide" in done
    with Session(app_engine[0]) as session:
        review = session.exec(select(Review)).one()
    assert (review.reviewer, review.decision) == ("rex", "accept")
    again = client.post(f"/proposals/{ids['proposal']}/decide",
                        data={"decision": "accept", "comment": "", "csrf_token": token(done)})
    assert again.status_code == 409 and "already accepted" in again.text


def test_reviewer_edits_with_yaml_and_bad_yaml_is_explained(web_lite):
    pytest.importorskip("radar.review")
    client, ids, policy = web_lite
    page = client.get(f"/proposals/{ids['proposal']}").text
    url = f"/proposals/{ids['proposal']}/decide"
    bad = client.post(url, data={"decision": "edit", "comment": "tighter", "edited_rule": "id: [unclosed",
                                 "csrf_token": token(page)})
    assert bad.status_code == 400 and "not valid YAML" in bad.text and "id: [unclosed" in bad.text
    not_mapping = client.post(url, data={"decision": "edit", "comment": "x", "edited_rule": "- a\n- b", "csrf_token": token(page)})
    assert not_mapping.status_code == 400 and "YAML mapping" in not_mapping.text
    rule_yaml = re.search(r'<textarea name="edited_rule"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    import html as html_lib

    edited = html_lib.unescape(rule_yaml).replace("Magnetic toys with small loose magnets <b>web test</b>", "Magnet sets, edited")
    ok = client.post(url, data={"decision": "edit", "comment": "Shorter title.", "edited_rule": edited, "csrf_token": token(page)})
    assert ok.status_code == 303, ok.text
    assert "Magnet sets, edited" in policy.read_text()


def test_reviewer_rejects_with_a_comment(web_lite):
    pytest.importorskip("radar.review")
    client, ids, policy = web_lite
    before = policy.read_text()
    page = client.get(f"/proposals/{ids['proposal']}").text
    url = f"/proposals/{ids['proposal']}/decide"
    assert client.post(url, data={"decision": "reject", "comment": " ", "csrf_token": token(page)}).status_code == 400
    assert client.post(url, data={"decision": "reject", "comment": "Too broad.", "csrf_token": token(page)}).status_code == 303
    assert policy.read_text() == before
    assert "<strong>reject</strong> by rex" in client.get(f"/proposals/{ids['proposal']}").text


# -- sources, digest, API -------------------------------------------------------------------------


def test_sources_page_shows_runs_status_and_errors(web_lite):
    client, _, _ = web_lite
    page = client.get("/sources").text
    assert 'id="source-us_cpsc_recalls"' in page and "s-failed" in page
    assert "parse error near &lt;b&gt;bold&lt;/b&gt; &amp; friends" in page
    assert "1 failing" in page
    assert re.search(r'id="source-eu_safety_gate_alerts".*?<span class="status s-ok">ok</span>', page, re.S)


def test_digest_preview_or_a_clear_message(web_lite):
    client, _, _ = web_lite
    page = client.get("/digest?week=2024-W19")
    assert page.status_code == 200
    try:
        import radar.digest as digest  # noqa: F401
        installed = hasattr(digest, "render_preview")
    except ImportError:
        installed = False
    if not installed:
        assert "not installed" in page.text
        return
    assert "EMEA toys" in page.text and 'sandbox src="/digest/preview.html?week=2024-W19' in page.text
    frame_url = re.search(r'<iframe class="digest" sandbox src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    frame = client.get(frame_url)
    assert frame.status_code == 200 and frame.headers["content-security-policy"].startswith("sandbox")
    assert client.get("/digest?week=2024-99").status_code == 400
    assert client.get("/digest?subscription=999").status_code == 404


def test_json_api_and_openapi(web):
    client, ids, _ = web
    search = client.get("/api/search", params={"q": "charger", "facets": "true", "market": "juris.eu.de"}).json()
    assert [r["id"] for r in search["results"]] == [ids["n1"]]
    assert "[" in search["results"][0]["snippet"] and "\x02" not in json.dumps(search)
    assert search["facets"]["facets"]["source"] == [{"value": "eu_safety_gate_alerts", "count": 1}]
    notice = client.get(f"/api/notices/{ids['n4']}").json()
    assert notice["text"] == HOSTILE_TEXT and notice["raw_url"] == f"/notices/{ids['n4']}/raw"
    assert {f["value"] for f in notice["findings"]} >= {"hazard.chemical"}
    n1 = client.get(f"/api/notices/{ids['n1']}").json()
    assert [v["version"] for v in n1["versions"]] == [2, 1] and n1["incidents"][0]["others"][0]["id"] == ids["n2"]
    sources = {s["name"]: s for s in client.get("/api/sources").json()}
    assert sources["us_cpsc_recalls"]["status"] == "failed" and sources["us_cpsc_recalls"]["runs"][0]["errors"] == 1
    proposals = client.get("/api/proposals").json()
    assert proposals[0]["impact"]["hits"] == 340
    detail = client.get(f"/api/proposals/{ids['proposal']}").json()
    assert detail["diff"].startswith("---") and detail["rule"]["id"] == "rule.toys.web_test_magnets"
    assert client.get("/api/notices/999999").status_code == 404
    spec = client.get("/api/openapi.json").json()
    assert {"/api/search", "/api/notices/{notice_id}", "/api/sources", "/api/proposals", "/api/proposals/{proposal_id}"} <= set(spec["paths"])
    assert not any(path.startswith("/search") or path.startswith("/login") for path in spec["paths"])


# -- users CLI ------------------------------------------------------------------------------------


def test_users_cli(sqlite_url, monkeypatch):
    from radar.auth import authenticate
    from radar.cli import main
    from radar.db import get_engine

    from radar import settings

    monkeypatch.setenv("RADAR_DATABASE_URL", sqlite_url)
    settings.get_settings.cache_clear()
    runner = CliRunner()
    monkeypatch.setenv("RADAR_USER_PASSWORD", "s3cret-enough")
    result = runner.invoke(main, ["users", "add", "rita", "--role", "reviewer", "--email", "rita@example.org"])
    assert result.exit_code == 0, result.output
    assert "added rita (reviewer)" in result.output
    duplicate = runner.invoke(main, ["users", "add", "rita"])
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    listing = runner.invoke(main, ["users", "list"])
    assert "rita" in listing.output and "reviewer" in listing.output
    assert runner.invoke(main, ["users", "set-role", "rita", "admin"]).exit_code == 0
    assert authenticate(get_engine(), "rita", "s3cret-enough").role == "admin"
    assert authenticate(get_engine(), "rita", "wrong") is None
    assert runner.invoke(main, ["users", "set-role", "nobody", "admin"]).exit_code == 1
    monkeypatch.setenv("RADAR_USER_PASSWORD", "short")
    short = runner.invoke(main, ["users", "add", "sam"])
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    monkeypatch.delenv("RADAR_USER_PASSWORD")
    prompted = runner.invoke(main, ["users", "add", "tom"], input="prompted-pass\nprompted-pass\n")
    assert prompted.exit_code == 0, prompted.output
    assert authenticate(get_engine(), "tom", "prompted-pass").role == "viewer"


def test_password_is_stored_hashed(lite_engine):
    from radar.auth import get_user

    user = get_user(lite_engine[0], "rex")
    assert user.password_hash.startswith("$argon2") and PASSWORDS["rex"] not in user.password_hash
