"""End to end through a real HTTP server on 127.0.0.1: crawl, store, re-crawl, and broken sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func
from sqlmodel import Session, select

from crawlers.runner import crawl_subprocess
from crawlers.sources import default_sources_dir
from radar.cli import main
from radar.db import get_engine
from radar.models import Notice, NoticeVersion
from radar.sampleserver import SAMPLES_DIR, Route, SampleServer
from radar.settings import get_settings
from radar.summary import last_runs

FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = ["eu_safety_gate_alerts", "uk_opss_alerts", "us_cpsc_recalls"]
CPSC = "/www.saferproducts.gov/RestWebServices/Recall"
OPSS_FEED = "/www.gov.uk/product-safety-alerts-reports-recalls.atom"
SG_LIST = "/ec.europa.eu/safety-gate-alerts/api/download/weeklyReport/list/xml/en"


def crawl(server: SampleServer, *names: str, env: dict[str, str] | None = None):
    result = crawl_subprocess(list(names) or None, mirror=server.url, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def counts(engine) -> dict[str, int]:
    with Session(engine) as session:
        return dict(session.exec(select(Notice.source, func.count()).group_by(Notice.source)).all())


def test_crawl_all_sources_then_recrawl_stores_nothing_twice(db_url):
    engine = get_engine(db_url)
    with SampleServer() as server:
        crawl(server, *SOURCES)
        first = counts(engine)
        assert set(first) == set(SOURCES) and all(n >= 5 for n in first.values()), first
        runs = last_runs(engine)
        assert {runs[s].status for s in SOURCES} == {"ok"}
        assert all(runs[s].new == first[s] and runs[s].bytes > 0 for s in SOURCES)
        first_bytes = {s: runs[s].bytes for s in SOURCES}

        crawl(server, *SOURCES)
        assert counts(engine) == first
        runs = last_runs(engine)
        assert all(runs[s].new == 0 and runs[s].updated == 0 and runs[s].unchanged == first[s] for s in SOURCES)
        # Conditional requests: an unchanged source answers 304s, so the re-crawl moves almost nothing.
        assert all(runs[s].bytes < 0.05 * first_bytes[s] for s in SOURCES), {s: runs[s].bytes for s in SOURCES}
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(NoticeVersion)).one() == sum(first.values())
        notice = session.exec(select(Notice).where(Notice.source == "us_cpsc_recalls")).first()
        assert notice.url.startswith("https://")  # the publisher's address is stored, not the mirror's
        assert notice.raw_sha256 and notice.title


def test_one_source_500_another_timing_out_the_third_is_stored(sqlite_url, monkeypatch):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route(CPSC, Route(status=500, body=b"Internal Server Error", content_type="text/plain"))
        server.add_route(OPSS_FEED, Route(delay=4.0, body=b"<feed/>", content_type="application/atom+xml"))
        crawl(server, *SOURCES, env={"RADAR_HTTP_TIMEOUT": "1", "RADAR_HTTP_RETRIES": "0"})
    found = counts(engine)
    assert found.get("eu_safety_gate_alerts", 0) >= 5
    assert "us_cpsc_recalls" not in found and "uk_opss_alerts" not in found
    runs = last_runs(engine)
    assert runs["eu_safety_gate_alerts"].status == "ok"
    assert runs["us_cpsc_recalls"].status == "failed"
    assert any("HTTP 500" in m for m in runs["us_cpsc_recalls"].messages), runs["us_cpsc_recalls"].messages
    assert runs["uk_opss_alerts"].status == "failed"
    assert any("http_error" in m for m in runs["uk_opss_alerts"].messages), runs["uk_opss_alerts"].messages


@pytest.mark.parametrize("path,fixture,kind", [
    (CPSC, "us_cpsc_recalls/recalls_truncated.json", "malformed"),
    (CPSC, "us_cpsc_recalls/recalls_error_page.html", "error_body"),
    (OPSS_FEED, "uk_opss_alerts/feed_truncated.atom", None),
    (SG_LIST, "eu_safety_gate_alerts/list_truncated.xml", None),
])
def test_broken_body_fails_its_source_only_and_keeps_what_was_stored(sqlite_url, path, fixture, kind):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        crawl(server, *SOURCES)
        before = counts(engine)
        server.add_route(path, Route(body=(FIXTURES / fixture).read_bytes(), content_type="application/octet-stream"))
        crawl(server, *SOURCES)
    assert counts(engine) == before  # nothing lost, nothing duplicated
    runs = last_runs(engine)
    broken = next(s for s in SOURCES if runs[s].status != "ok")
    assert runs[broken].status in ("failed", "partial")
    if kind:
        assert any(m.startswith(kind) for m in runs[broken].messages), runs[broken].messages
    assert sum(runs[s].status == "ok" for s in SOURCES) == 2


def test_edited_notice_becomes_a_new_version_and_untitled_record_is_dropped(sqlite_url):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        crawl(server, "us_cpsc_recalls")
        server.add_route(CPSC, Route(body=(FIXTURES / "us_cpsc_recalls/recalls_edited.json").read_bytes(),
                                     content_type="application/json"))
        crawl(server, "us_cpsc_recalls")
        server.add_route(CPSC, Route(body=(FIXTURES / "us_cpsc_recalls/recalls_no_title.json").read_bytes(),
                                     content_type="application/json"))
        result = crawl(server, "us_cpsc_recalls")
    run = last_runs(engine)["us_cpsc_recalls"]
    assert "has no title" in result.stderr
    with Session(engine) as session:
        edited = session.exec(select(Notice).where(Notice.version > 1)).all()
        assert len(edited) >= 1
        versions = session.exec(select(NoticeVersion).where(NoticeVersion.notice_id == edited[0].id)).all()
        assert sorted(v.version for v in versions) == list(range(1, edited[0].version + 1))
        assert versions[0].fields["text"] != versions[-1].fields["text"] or versions[0].fields["title"] != versions[-1].fields["title"]
    assert run.status in ("ok", "partial")


def test_script_in_notice_text_is_stored_as_text_without_markup(sqlite_url):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route(CPSC, Route(body=(FIXTURES / "us_cpsc_recalls/recalls_script.json").read_bytes(),
                                     content_type="application/json"))
        crawl(server, "us_cpsc_recalls")
    with Session(engine) as session:
        notices = session.exec(select(Notice).where(Notice.source == "us_cpsc_recalls")).all()
    assert notices
    for notice in notices:
        assert "<script" not in notice.text.lower() and "alert(" not in notice.text
        assert "<" not in notice.title


def test_redirect_to_another_domain_is_not_followed(sqlite_url):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route(CPSC, Route(status=302, body=b"", content_type="text/plain",
                                     headers={"Location": "https://elsewhere.example/recalls.json"}))
        crawl(server, "us_cpsc_recalls")
        assert not any("elsewhere.example" in path for path in server.requests), server.requests
    run = last_runs(engine)["us_cpsc_recalls"]
    assert run.status == "failed" and run.records == 0
    assert any(m.startswith("offsite_redirect: https://www.saferproducts.gov/RestWebServices/Recall?") and
               m.endswith(" redirects to https://elsewhere.example/recalls.json, outside www.saferproducts.gov; "
                          "not followed") for m in run.messages), run.messages


def source_at(tmp_path: Path, monkeypatch, name: str, url: str) -> None:
    """The bundled source ``name`` with ``url`` as its entry point, alone in the sources folder the settings name."""
    config = yaml.safe_load((default_sources_dir() / f"{name}.yml").read_text(encoding="utf-8"))
    config["url"] = url
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / f"{name}.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(sources))
    get_settings.cache_clear()


def sources_listed() -> dict[str, dict]:
    """What `radar sources --json` says about each source."""
    result = CliRunner().invoke(main, ["sources", "--json"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.output)}


def test_redirect_to_another_host_name_is_reported_on_the_run(sqlite_url, tmp_path, monkeypatch):
    # No mirror: the spider reads 127.0.0.1 itself, and the server sends it on to the same port as "localhost",
    # which Scrapy's redirect handling follows and its offsite filter then drops.
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        moved = f"http://localhost:{server.httpd.server_address[1]}/moved/recalls.json"
        server.add_route("/api/recalls", Route(status=302, headers={"Location": moved}))
        recalls = (SAMPLES_DIR / "www.saferproducts.gov/RestWebServices/Recall").read_bytes()
        server.add_route("/moved/recalls.json", Route(body=recalls, content_type="application/json"))
        source_at(tmp_path, monkeypatch, "us_cpsc_recalls", f"{server.url}/api/recalls?format=json")
        result = crawl_subprocess(["us_cpsc_recalls"], timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        assert [path.split("?")[0] for path in server.requests] == ["/robots.txt", "/api/recalls"]
    run = last_runs(engine)["us_cpsc_recalls"]
    assert run.status == "failed" and run.records == 0
    offsite = [m for m in run.messages if m.startswith("offsite_redirect: ")]
    assert len(offsite) == 1, run.messages
    assert offsite[0].startswith(f"offsite_redirect: {server.url}/api/recalls?format=json")
    assert offsite[0].endswith(f" redirects to {moved}, outside 127.0.0.1; not followed")
    assert offsite[0] in sources_listed()["us_cpsc_recalls"]["messages"]


def test_source_whose_robots_txt_forbids_everything_is_refused_with_that_message(sqlite_url):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route("/www.saferproducts.gov/robots.txt",
                         Route(body=b"User-agent: *\nDisallow: /\n", content_type="text/plain"))
        crawl(server, "us_cpsc_recalls", "uk_opss_alerts")
        cpsc = [path for path in server.requests if path.startswith("/www.saferproducts.gov/")]
        assert cpsc == ["/www.saferproducts.gov/robots.txt"]
    runs = last_runs(engine)
    assert runs["uk_opss_alerts"].status == "ok"  # another publisher's robots.txt allows us
    run = runs["us_cpsc_recalls"]
    assert (run.status, run.records) == ("refused", 0)
    # Reported once, by name; the spider's errback does not add an http_error for the same request.
    [message] = run.messages
    assert message.startswith("robots_forbidden: https://www.saferproducts.gov/robots.txt forbids "
                              "https://www.saferproducts.gov/RestWebServices/Recall?format=json"), message
    listed = sources_listed()["us_cpsc_recalls"]
    assert listed["status"] == "refused" and listed["messages"] == [message]


def test_source_whose_terms_forbid_crawling_is_refused_with_its_reason(sqlite_url, tmp_path, monkeypatch):
    sources = tmp_path / "sources"
    sources.mkdir()
    text = (default_sources_dir() / "us_cpsc_recalls.yml").read_text()
    (sources / "us_cpsc_recalls.yml").write_text(text + "\ncrawl_permitted: false\nrefusal: terms of use forbid automated access\n")
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(sources))
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        crawl(server, "us_cpsc_recalls")
        assert server.requests == []
    run = last_runs(engine)["us_cpsc_recalls"]
    assert run.status == "refused"
    assert run.messages == ["crawling is not permitted by the publisher: terms of use forbid automated access"]


def test_huge_response_is_dropped_and_reported(sqlite_url):
    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route(CPSC, Route(body=b"[" + b" " * 3_000_000 + b"]", content_type="application/json"))
        crawl(server, "us_cpsc_recalls", env={"RADAR_MAX_RESPONSE_BYTES": "1000000"})
    run = last_runs(engine)["us_cpsc_recalls"]
    assert run.status == "failed" and run.records == 0
    assert run.messages, "the dropped response must be reported"
