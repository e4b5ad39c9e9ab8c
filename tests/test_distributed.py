"""Crawl workers sharing a Redis frontier (scrapy-redis): each page of a real local site is fetched once."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, select

from radar.models import JobRun, Notice, SourceRun
from radar.sampleserver import Route, SampleServer

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "tests" / "fixtures" / "site"
REDIS_URL = os.environ.get("RADAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECTIONS, LEAVES = 16, 2  # index → 16 section pages → 2 leaf pages each: 49 pages, with many repeated links


@pytest.fixture
def redis_url():
    """The test Redis database (db 15), emptied of Risk Radar keys before and after; skip where unreachable."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__}); distributed-crawl tests skipped")

    def clean() -> None:
        for key in client.scan_iter(match="radar:*"):
            client.delete(key)

    clean()
    yield REDIS_URL
    clean()
    client.close()


def _page(title: str, links: list[str]) -> bytes:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<html><head><title>{title}</title></head><body><p>{title} text.</p><ul>{anchors}</ul>"
            f"</body></html>").encode()


def _serve_site(server: SampleServer, delay: float) -> set[str]:
    """A site of linked pages under https://site.test/, served slowly enough that workers overlap."""
    paths = {}
    sections = [f"s{i}.html" for i in range(SECTIONS)]
    paths["index.html"] = _page("Index", sections + ["index.html"])
    for i, section in enumerate(sections):
        leaves = [f"s{i}-l{j}.html" for j in range(LEAVES)]
        # Links back to the index and to the neighbours: every page is linked from several others.
        paths[section] = _page(f"Section {i}", leaves + ["index.html", sections[(i + 1) % SECTIONS]])
        for leaf in leaves:
            paths[leaf] = _page(f"Leaf {leaf}", ["index.html", section, leaves[0]])
    for name, body in paths.items():
        server.add_route(f"/site.test/{name}", Route(200, body, "text/html; charset=utf-8", delay=delay))
    return {f"/site.test/{name}" for name in paths}


def _env(db_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, RADAR_DATABASE_URL=db_url, RADAR_REDIS_URL=redis_url,
                RADAR_SOURCES_DIR=str(SITE / "sources"), RADAR_DATA_DIR=str(tmp_path / "var"),
                RADAR_LOG_LEVEL="INFO", PYTHONPATH=os.pathsep.join([str(SITE), str(REPO)]))


@pytest.mark.postgres
def test_two_workers_fetch_each_page_once(pg_url, redis_url, tmp_path):
    """On PostgreSQL, the production shared state (SQLite with a worker: the next test)."""
    from crawlers.distributed import worker_argv
    from radar.db import get_engine

    db_url = pg_url
    engine = get_engine(db_url)  # migrated once here, not raced by the two workers
    crawl_id = f"xx_local_site-{uuid.uuid4().hex}"
    with SampleServer(tmp_path) as server:
        # Slow enough (about 5 s for one worker) that the second worker, which may take seconds to start on a
        # busy machine, still finds pages queued; idle-close above the page delay, so neither gives up
        # while the other's responses are on their way.
        pages = _serve_site(server, delay=0.75)
        argv = worker_argv(["xx_local_site"], crawl_id, mirror=server.url, spider_modules=["site_spiders"])
        env = _env(db_url, redis_url, tmp_path)
        workers = [subprocess.Popen(argv + ["--idle-close", "3"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outputs = []
        try:
            for proc in workers:
                outputs.append(proc.communicate(timeout=60)[0])
        finally:
            for proc in workers:
                proc.kill() if proc.poll() is None else None
        fetched = Counter(path for path in server.requests if path.endswith(".html"))
    assert all(proc.returncode == 0 for proc in workers), "\n".join(o[-3000:] for o in outputs)
    assert set(fetched) == pages, f"pages never fetched: {sorted(pages - set(fetched))[:5]}"
    twice = {path: n for path, n in fetched.items() if n > 1}
    assert not twice, f"fetched more than once: {twice}"
    with Session(engine) as session:
        runs = list(session.exec(select(SourceRun).where(SourceRun.source == "xx_local_site")))
        notices = list(session.exec(select(Notice.source_id).where(Notice.source == "xx_local_site")))
    assert len(notices) == len(pages) == len(set(notices))
    # Both workers took part: each recorded its own share of the pages.
    assert len(runs) == 2
    assert sorted(r.records > 0 for r in runs) == [True, True], [(r.id, r.records) for r in runs]
    assert sum(r.records for r in runs) == len(pages)


def test_scheduled_crawl_is_shared_with_a_running_worker(sqlite_url, redis_url, tmp_path, monkeypatch):
    """The product path: the scheduler's crawl job announces the crawl, runs one worker itself, and a
    `radar worker` joins; the real uk_opss_alerts spider crawls the bundled samples, each URL once."""
    from crawlers.distributed import ANNOUNCE_KEY, Worker
    from radar import jobs
    from radar.db import get_engine
    from radar.settings import get_settings

    with SampleServer() as server:
        for name, value in {"RADAR_DATABASE_URL": sqlite_url, "RADAR_REDIS_URL": redis_url,
                            "RADAR_CRAWL_MIRROR": server.url, "RADAR_WORKER_IDLE_CLOSE": "1"}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        engine = get_engine(sqlite_url)
        worker = Worker(redis_url, poll=0.2, parallel=1)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            outcome = jobs.run_job("crawl:uk_opss_alerts", engine=engine)
        finally:
            worker.stopping.set()
            thread.join(timeout=30)
        fetched = Counter(path for path in server.requests if "robots.txt" not in path)
    assert outcome.status == jobs.OK, outcome.message
    assert fetched and max(fetched.values()) == 1, fetched
    assert len(fetched) == 9  # the feed and its 8 notices
    with Session(engine) as session:
        assert len(list(session.exec(select(Notice).where(Notice.source == "uk_opss_alerts")))) == 8
        row = session.exec(select(JobRun).where(JobRun.run_id == outcome.run_id)).one()
    assert row.status == "ok" and "records" in row.message
    import redis

    assert not redis.Redis.from_url(redis_url).hexists(ANNOUNCE_KEY, f"uk_opss_alerts-{outcome.run_id}")


def test_redis_settings_refuse_an_unsafe_crawl_id():
    from crawlers.distributed import redis_scrapy_settings

    with pytest.raises(ValueError, match="crawl id"):
        redis_scrapy_settings("redis://127.0.0.1:6379/15", "bad%(id)s")
    values = redis_scrapy_settings("redis://127.0.0.1:6379/15", "abc")
    assert values["SCHEDULER_PERSIST"] is True
    assert values["SCHEDULER_QUEUE_KEY"] == "radar:crawl:abc:%(spider)s:requests"
