"""The scheduler: APScheduler 3 with its job store in the Risk Radar database, run by the elected leader.

Persistence: jobs live in the ``apscheduler_jobs`` table of the same database, each as a reference
to ``radar.jobs:run_scheduled`` with the job name. APScheduler writes a job's next run time before it
runs the job, so a restart never repeats a run that started; a run missed while no scheduler was up is
run once (``coalesce``) if the scheduler is back within ``misfire_grace_time``. On start, the stored
jobs are reconciled with the registry: a job whose trigger is unchanged keeps its stored next run time
(that is what makes a missed run still due), a changed schedule is rescheduled, a removed source is
dropped.

Chaining: stages have no clock of their own. Each scheduled crawl that finishes (re)schedules the
one-shot ``pipeline`` job ``chain_delay`` seconds later (classify → incidents → signals → propose →
impact), so a burst of crawls at 07:15 is followed by a single pipeline run; the pending chain is in
the job store too, so it survives a restart.

Stopping: ``stop(grace)`` pauses job processing, waits up to ``grace`` seconds for running jobs, then
abandons the rest (a crawl's child is stopped, its JobRun marked ``abandoned``) and stores a one-shot
``resume:<job>`` so the next leader runs the abandoned job again when it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from radar import jobs as jobs_mod

log = logging.getLogger(__name__)

JOB_FUNC = "radar.jobs:run_scheduled"
TABLE = "apscheduler_jobs"

_current: "RadarScheduler | None" = None
_current_lock = threading.Lock()


def current() -> "RadarScheduler | None":
    """The scheduler running in this process (the leader's), if any."""
    return _current


def _scheduler_class():
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import STATE_RUNNING

    class Scheduler(BackgroundScheduler):
        """BackgroundScheduler that fires nothing unless running.

        APScheduler 3's loop makes one more round after shutdown(), with the state STOPPED (not PAUSED),
        so a job due then is submitted to the closed executor and, for a one-shot job, deleted from
        the store: a stored resume would be lost.
        """

        def _process_jobs(self):
            if self.state != STATE_RUNNING:
                return None
            return super()._process_jobs()

    return Scheduler


def _job_name(job_id: str) -> str:
    return job_id.removeprefix("resume:")


def chain_after_crawl(job: str) -> None:
    """Called by a finished scheduled crawl: the pipeline follows, once, after the last crawl of a burst."""
    sched = _current
    if sched is None:
        log.debug("%s finished outside a running scheduler; no pipeline chained (run `radar run pipeline`)", job)
        return
    sched.schedule_pipeline()


class RadarScheduler:
    """The leader's scheduler. ``start()`` reconciles the stored jobs with the registry and begins firing."""

    def __init__(self, engine: Engine, settings=None, *, threads: int | None = None) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        from radar.db import make_engine
        from radar.settings import get_settings

        self.engine = engine
        self.settings = settings or get_settings()
        # Its own engine: the job store disposes of its engine on shutdown, which must not touch ours.
        self._store_engine = make_engine(engine.url.render_as_string(hide_password=False))
        self.scheduler = _scheduler_class()(
            jobstores={"default": SQLAlchemyJobStore(engine=self._store_engine, tablename=TABLE)},
            executors={"default": ThreadPoolExecutor(threads or int(self.settings.scheduler_threads))},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(self.settings.misfire_grace_time)},
            timezone=timezone.utc,
        )
        self.started = False
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> "RadarScheduler":
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED

        global _current
        jobs_mod.STOPPING.clear()
        self.scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        self.scheduler.start(paused=True)
        try:
            jobs_mod.mark_stale_scheduler_runs(self.engine)
            self.sync()
        except Exception:
            self.scheduler.shutdown(wait=False)
            raise
        with _current_lock:
            _current = self
        self.started = True
        self.scheduler.resume()
        log.info("scheduler started: %d jobs", len(self.scheduler.get_jobs()))
        return self

    def stop(self, grace: float = 0.0) -> list[str]:
        """Stop firing jobs; let running ones finish for ``grace`` seconds, then abandon them.

        Returns the names of the jobs abandoned or never started; each gets a stored one-shot job that
        runs it when a scheduler next starts.
        """
        global _current
        if not self.started:
            return []
        self.started = False
        self.scheduler.pause()
        # APScheduler's loop submits due jobs while holding this lock: once we hold it, the paused
        # loop has finished its last round and submits nothing more.
        with self.scheduler._jobstores_lock:
            pass
        with _current_lock:
            if _current is self:
                _current = None
        deadline = time.monotonic() + grace
        while (jobs_mod.running_here() or self._queued()) and time.monotonic() < deadline:
            time.sleep(0.1)
        running = jobs_mod.running_here()
        # Jobs still queued in the pool must not start now: they return at once and are resumed later.
        jobs_mod.STOPPING.set()
        if running:
            names = sorted({r.job for r in running})
            log.warning("stopping with %d job(s) still running (%s): abandoning them", len(running), ", ".join(names))
            jobs_mod.abandon_all()
            # Crawls stop their child (SIGTERM, then SIGKILL after crawl_kill_grace) and record themselves.
            settle = time.monotonic() + float(self.settings.crawl_kill_grace) + 3
            while jobs_mod.running_here() and time.monotonic() < settle:
                time.sleep(0.1)
            stuck = jobs_mod.running_here()
            if stuck:  # an in-process stage cannot be interrupted; its open transaction dies with the process
                jobs_mod.mark_abandoned(self.engine, [r.run_id for r in stuck],
                                        "abandoned: the scheduler stopped during the run; its last transaction was rolled back")
        self.scheduler.shutdown(wait=False)
        time.sleep(0.2)  # lets queued jobs reach run_scheduled, which declines them while STOPPING
        resume = [r.job for r in running] + jobs_mod.REFUSED + [_job_name(i) for i in self._queued()]
        resume = list(dict.fromkeys("pipeline" if name in jobs_mod.PIPELINE else name for name in resume))
        jobs_mod.REFUSED.clear()
        if resume:
            self._store_resumes(resume)
        self._store_engine.dispose()
        log.info("scheduler stopped%s", f"; to resume on the next start: {', '.join(resume)}" if resume else "")
        return resume

    def _on_event(self, event) -> None:
        from apscheduler.events import EVENT_JOB_SUBMITTED

        with self._inflight_lock:
            delta = 1 if event.code == EVENT_JOB_SUBMITTED else -1
            self._inflight[event.job_id] = self._inflight.get(event.job_id, 0) + delta

    def _queued(self) -> list[str]:
        """Ids of jobs submitted to the pool that have not finished (queued or running)."""
        with self._inflight_lock:
            return [job_id for job_id, count in self._inflight.items() if count > 0]

    def _store_resumes(self, names: list[str]) -> None:
        """One-shot jobs, due now and without a misfire limit, written through a scheduler that never fires."""
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        writer = _scheduler_class()(jobstores={"default": SQLAlchemyJobStore(engine=self._store_engine, tablename=TABLE)},
                                     timezone=timezone.utc)
        now = datetime.now(timezone.utc)
        for name in names:
            job_id = "pipeline" if name == "pipeline" else f"resume:{name}"
            writer.add_job(JOB_FUNC, "date", run_date=now, args=[name], id=job_id, name=job_id,
                           replace_existing=True, misfire_grace_time=None)
            log.info("%s will run again when a scheduler next starts", name)
        writer.start(paused=True)
        writer.shutdown(wait=False)

    # -- jobs --------------------------------------------------------------------------------------

    def sync(self) -> dict[str, str]:
        """Reconcile the stored jobs with the registry; returns what happened to each job name."""
        desired = {name: spec for name, spec in jobs_mod.registry(self.settings).items() if spec.trigger is not None}
        stored = {job.id: job for job in self.scheduler.get_jobs()}
        changes: dict[str, str] = {}
        for name, spec in desired.items():
            trigger = spec.make_trigger()
            job = stored.get(name)
            if job is None:
                self.scheduler.add_job(JOB_FUNC, trigger, args=[name], id=name, name=name)
                changes[name] = "added"
            elif repr(job.trigger) != repr(trigger) or job.args != (name,):
                self.scheduler.reschedule_job(name, trigger=trigger)
                changes[name] = "rescheduled"
            else:
                changes[name] = "kept"  # its stored next run time stands, missed or not
        for job_id in stored:
            if job_id not in desired and not job_id.startswith("resume:") and job_id != "pipeline":
                self.scheduler.remove_job(job_id)
                changes[job_id] = "removed"
        for name, change in sorted(changes.items()):
            if change != "kept":
                log.info("job %s %s", name, change)
        return changes

    def schedule_pipeline(self, delay: float | None = None) -> None:
        delay = float(self.settings.chain_delay if delay is None else delay)
        run_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
        self.scheduler.add_job(JOB_FUNC, "date", run_date=run_at, args=["pipeline"], id="pipeline",
                               name="pipeline", replace_existing=True)
        log.info("pipeline scheduled at %s", run_at.isoformat(timespec="seconds"))

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}


def stored_next_runs(engine: Engine) -> dict[str, datetime]:
    """Next run times from the job store, read without starting a scheduler (for `radar jobs`)."""
    if not inspect(engine).has_table(TABLE):
        return {}
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT id, next_run_time FROM {TABLE}")).all()
    return {row[0]: datetime.fromtimestamp(row[1], timezone.utc) for row in rows if row[1] is not None}


def list_jobs(engine: Engine, settings=None) -> list[dict]:
    """Every job with its schedule, last run and next run, for `radar jobs` and the web pages."""
    from radar.settings import get_settings

    settings = settings or get_settings()
    registry = jobs_mod.registry(settings)
    stored = stored_next_runs(engine)
    last = jobs_mod.last_runs(engine)
    now = datetime.now(timezone.utc)
    rows = []
    for name, spec in registry.items():
        next_run = stored.get(name)
        planned = "stored"
        if next_run is None and spec.trigger is not None:
            next_run = spec.make_trigger().get_next_fire_time(None, now)
            planned = "computed"  # no scheduler has stored it yet
        if name == "pipeline" and "pipeline" in stored:
            next_run = stored["pipeline"]
        if next_run is None and f"resume:{name}" in stored:
            next_run, planned = stored[f"resume:{name}"], "resume"
        run = last.get(name)
        rows.append({
            "job": name, "kind": spec.kind, "schedule": spec.schedule_text, "description": spec.description,
            "next_run": next_run.isoformat(timespec="seconds") if next_run else None, "next_run_from": planned,
            "last_run": jobs_mod.utc(run.started_at).isoformat(timespec="seconds") if run else None,
            "last_status": run.status if run else None, "last_message": run.message if run else "",
            "last_run_id": run.run_id if run else None,
        })
    return rows
