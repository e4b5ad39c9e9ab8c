"""The scheduler and its jobs: persistent store, no repeats across restarts, chaining, time limits, shutdown."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlmodel import Session, select

from radar import jobs
from radar.errors import ConfigError
from radar.models import JobRun, SourceRun

REPO = Path(__file__).resolve().parents[1]
FEED = "/www.gov.uk/product-safety-alerts-reports-recalls.atom"


@pytest.fixture
def extra_jobs():
    """Jobs registered for one test, the way a plugin registers them; removed afterwards."""
    names: list[str] = []

    def add(spec: jobs.JobSpec) -> jobs.JobSpec:
        jobs.register(spec)
        names.append(spec.name)
        return spec

    yield add
    for name in names:
        jobs.unregister(name)


def _runs(engine, job: str) -> list[JobRun]:
    with Session(engine) as session:
        return list(session.exec(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def _wait(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _daily_at(moment: datetime) -> CronTrigger:
    """A real daily cron trigger that next fires at ``moment`` (UTC, to the second)."""
    return CronTrigger(hour=moment.hour, minute=moment.minute, second=moment.second, timezone=timezone.utc)


# -- the registry ---------------------------------------------------------------------------------


def test_registry_has_a_crawl_per_source_then_the_stages_and_the_digest(monkeypatch):
    from radar.settings import get_settings

    monkeypatch.setenv("RADAR_CRAWL_TIME_LIMITS", "uk_opss_alerts=120")
    get_settings.cache_clear()
    registry = jobs.registry()
    assert registry["crawl:uk_opss_alerts"].trigger == "15 7 * * *"
    assert registry["crawl:uk_opss_alerts"].time_limit == 120
    assert registry["crawl:us_cpsc_recalls"].time_limit == get_settings().crawl_time_limit
    assert [registry[name].kind for name in jobs.PIPELINE] == ["stage"] * len(jobs.PIPELINE)
    assert registry["pipeline"].trigger is None  # chained after crawls, no clock of its own
    digest = registry["digest"].make_trigger()
    assert str(digest.timezone) == "Europe/London"
    first = digest.get_next_fire_time(None, datetime(2025, 6, 4, 12, 0, tzinfo=timezone.utc))
    assert (first.weekday(), first.hour, first.minute) == (0, 7, 0)  # Monday 07:00 London time

    # Crontab weekdays count from Sunday = 0 (APScheduler 3 itself counts from Monday = 0).
    monday = datetime(2025, 6, 2, tzinfo=timezone.utc)
    fires = {expr: {(monday + timedelta(days=d)).strftime("%a") for d in range(7)
                    if jobs.cron_trigger(expr).get_next_fire_time(None, monday + timedelta(days=d)).date()
                    == (monday + timedelta(days=d)).date()}
             for expr in ("0 23 * * 1-5", "0 23 * * 0", "0 23 * * 7", "0 23 * * 1,6", "0 23 * * */3")}
    assert fires == {"0 23 * * 1-5": {"Mon", "Tue", "Wed", "Thu", "Fri"}, "0 23 * * 0": {"Sun"},
                     "0 23 * * 7": {"Sun"}, "0 23 * * 1,6": {"Mon", "Sat"}, "0 23 * * */3": {"Sun", "Wed", "Sat"}}
    with pytest.raises(ValueError):
        jobs.cron_trigger("0 7 * * 9")

    monkeypatch.setenv("RADAR_CRAWL_TIME_LIMITS", "uk_opss_alerts:120")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="crawl_time_limits"):
        jobs.registry()


def test_a_stage_not_installed_is_recorded_as_skipped_and_a_failure_as_failed(engine, extra_jobs, caplog):
    from radar.logging_setup import RunIdFilter

    extra_jobs(jobs.JobSpec("zz_missing", "stage", "a stage whose module is absent",
                            stage=jobs.Stage("radar.zz_not_written_yet", ("run",))))

    def broken(_engine):
        logging.getLogger("radar.tests").info("about to fail")
        raise RuntimeError("the classifier exploded")

    extra_jobs(jobs.JobSpec("zz_broken", "stage", "a stage that raises", func=broken))
    caplog.handler.addFilter(RunIdFilter())
    with caplog.at_level(logging.INFO):
        skipped = jobs.run_job("zz_missing", engine=engine, origin="manual")
        failed = jobs.run_job("zz_broken", engine=engine, origin="manual")
    assert skipped.status == "ok" and skipped.message.startswith(jobs.SKIPPED_NOT_INSTALLED)
    assert failed.status == "failed" and "the classifier exploded" in failed.message
    [row] = _runs(engine, "zz_broken")
    assert (row.status, row.run_id, row.finished_at is not None) == ("failed", failed.run_id, True)
    assert row.host.startswith("manual@")
    # Every line logged during the run names it, including those of the stage's own modules.
    lines = [r for r in caplog.records if r.name == "radar.tests"]
    assert lines and lines[0].run_id == failed.run_id and lines[0].job == "zz_broken"
    with pytest.raises(ConfigError, match="no job 'nope'"):
        jobs.run_job("nope", engine=engine)


# -- persistence: restarts neither repeat nor lose runs -------------------------------------------


def test_a_restarted_scheduler_does_not_repeat_a_job_that_already_ran(engine, extra_jobs):
    from radar.scheduler import RadarScheduler, stored_next_runs

    fire_at = (datetime.now(timezone.utc) + timedelta(seconds=2)).replace(microsecond=0)
    extra_jobs(jobs.JobSpec("probe", "stage", "probe", trigger=_daily_at(fire_at), func=lambda e: "probed"))
    first = RadarScheduler(engine).start()
    try:
        assert _wait(lambda: any(r.status == "ok" for r in _runs(engine, "probe")), 10)
    finally:
        first.stop(grace=5)
    second = RadarScheduler(engine).start()
    try:
        assert second.sync()["probe"] == "kept"
        time.sleep(max(0.0, (fire_at - datetime.now(timezone.utc)).total_seconds()) + 2)
        assert len(_runs(engine, "probe")) == 1
    finally:
        second.stop(grace=5)
    assert stored_next_runs(engine)["probe"] == fire_at + timedelta(days=1)


def test_a_run_missed_while_stopped_runs_once_on_restart(engine, extra_jobs):
    from radar.scheduler import RadarScheduler

    # Far enough ahead that the first scheduler has stored the job before the time comes, even on a busy
    # machine (were it stored after, its next run would be tomorrow and nothing would be missed).
    fire_at = (datetime.now(timezone.utc) + timedelta(seconds=4)).replace(microsecond=0)
    extra_jobs(jobs.JobSpec("probe", "stage", "probe", trigger=_daily_at(fire_at), func=lambda e: "probed"))
    RadarScheduler(engine).start().stop()  # stores the job with its next run time, then goes away
    time.sleep(max(0.0, (fire_at - datetime.now(timezone.utc)).total_seconds()) + 1)
    assert _runs(engine, "probe") == []
    again = RadarScheduler(engine).start()
    try:
        assert _wait(lambda: len(_runs(engine, "probe")) == 1 and _runs(engine, "probe")[0].status == "ok", 10)
        time.sleep(1)
        assert len(_runs(engine, "probe")) == 1  # coalesced: one run, not one per missed time
    finally:
        again.stop(grace=5)


def test_crawls_finishing_together_chain_one_pipeline_run_in_order(engine, extra_jobs, monkeypatch):
    from radar.scheduler import RadarScheduler, chain_after_crawl
    from radar.settings import get_settings

    monkeypatch.setenv("RADAR_CHAIN_DELAY", "1")
    get_settings.cache_clear()
    order: list[str] = []
    for name in jobs.PIPELINE:
        extra_jobs(jobs.JobSpec(name, "stage", name, func=lambda e, name=name: order.append(name)))
    sched = RadarScheduler(engine).start()
    try:
        chain_after_crawl("crawl:a")
        chain_after_crawl("crawl:b")  # pushes the same pending pipeline back: still one run
        assert _wait(lambda: [r.status for r in _runs(engine, "pipeline")] == ["ok"], 10)
        time.sleep(1.5)
    finally:
        sched.stop(grace=5)
    assert order == list(jobs.PIPELINE)
    assert len(_runs(engine, "pipeline")) == 1


# -- crawls in a child process --------------------------------------------------------------------


def test_a_hanging_crawl_is_stopped_at_its_time_limit(sqlite_url, monkeypatch):
    from radar.db import get_engine
    from radar.sampleserver import Route, SampleServer
    from radar.settings import get_settings

    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route(FEED, Route(200, b"<feed/>", "application/atom+xml", delay=60))
        monkeypatch.setenv("RADAR_CRAWL_MIRROR", server.url)
        monkeypatch.setenv("RADAR_DATABASE_URL", sqlite_url)
        # Past the child's start (importing Scrapy takes seconds on a busy machine), so its run record exists.
        monkeypatch.setenv("RADAR_CRAWL_TIME_LIMIT", "8")
        monkeypatch.setenv("RADAR_CRAWL_KILL_GRACE", "2")
        get_settings.cache_clear()
        started = time.monotonic()
        outcome = jobs.run_job("crawl:uk_opss_alerts", engine=engine)
        elapsed = time.monotonic() - started
    assert outcome.status == "timeout", outcome.message
    assert "time limit of 8s" in outcome.message
    assert elapsed < 8 + 2 + 10  # the limit, the kill grace, and slack for starting the child
    [row] = _runs(engine, "crawl:uk_opss_alerts")
    assert row.status == "timeout"
    with Session(engine) as session:
        runs = list(session.exec(select(SourceRun).where(SourceRun.source == "uk_opss_alerts")))
    assert runs and all(r.status != "running" for r in runs)  # no run record left open


# -- radar serve: SIGTERM abandons cleanly, the next start resumes ----------------------------------


def _serve(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    handle = log_path.open("a")
    return subprocess.Popen([sys.executable, "-m", "radar.cli", "serve", "--no-web"], env=env, stdout=handle,
                            stderr=subprocess.STDOUT, cwd=REPO)


def test_sigterm_abandons_the_running_crawl_and_the_next_start_resumes_it(sqlite_url, tmp_path):
    from radar.db import get_engine
    from radar.sampleserver import Route, SampleServer
    from radar.scheduler import JOB_FUNC, RadarScheduler

    engine = get_engine(sqlite_url)
    with SampleServer() as server:
        server.add_route(FEED, Route(200, b"<feed/>", "application/atom+xml", delay=60))
        env = dict(os.environ, RADAR_DATABASE_URL=sqlite_url, RADAR_CRAWL_MIRROR=server.url,
                   RADAR_SHUTDOWN_GRACE="1", RADAR_CRAWL_KILL_GRACE="2", RADAR_LEADER_POLL_SECONDS="0.2",
                   RADAR_DATA_DIR=str(tmp_path / "var"))
        # A crawl due now, stored the way the scheduler stores every job.
        seed = RadarScheduler(engine)
        seed.scheduler.add_job(JOB_FUNC, "date", run_date=datetime.now(timezone.utc), args=["crawl:uk_opss_alerts"],
                               id="resume:crawl:uk_opss_alerts")
        seed.scheduler.start(paused=True)  # writes the job to the store, fires nothing
        seed.scheduler.shutdown(wait=False)
        log_path = tmp_path / "serve.log"
        proc = _serve(env, log_path)
        try:
            assert _wait(lambda: any(r.status == "running" for r in _runs(engine, "crawl:uk_opss_alerts")), 20)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log_path.read_text()[-3000:]
        finally:
            proc.kill() if proc.poll() is None else None
        [abandoned] = _runs(engine, "crawl:uk_opss_alerts")
        assert abandoned.status == "abandoned", abandoned.message
        with Session(engine) as session:
            assert all(r.status != "running" for r in session.exec(select(SourceRun)))

        server.routes.clear()  # the publisher answers again
        proc = _serve(env, log_path)
        try:
            assert _wait(lambda: len(_runs(engine, "crawl:uk_opss_alerts")) == 2
                         and _runs(engine, "crawl:uk_opss_alerts")[1].status != "running", 30), log_path.read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            proc.kill() if proc.poll() is None else None
    resumed = _runs(engine, "crawl:uk_opss_alerts")[1]
    assert resumed.status == "ok", resumed.message
    assert "radar serve stopped" in log_path.read_text()
