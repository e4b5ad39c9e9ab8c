"""The job registry: what the scheduler can run, and how one run is carried out and recorded.

Jobs, by name (the name is also the job's id in APScheduler's store):

- ``crawl:<source>`` — one per enabled source, on the cron ``schedule`` of its YAML (UTC, like
  `radar sources`). The crawl runs in a child process with a time limit.
- ``classify``, ``incidents``, ``signals``, ``propose``, ``impact`` — the stages after a crawl (incidents
  before signals, which count incidents). They have no clock of their own: ``pipeline`` runs them in
  that order, and every finished scheduled crawl (re)schedules
  ``pipeline`` ``chain_delay`` seconds later, so a burst of crawls is followed by one pipeline run.
- ``digest`` — the weekly digest, on ``digest_schedule`` in ``timezone`` (Monday 07:00 Europe/London).

Stages are looked up by module and function name when they run, so a stage whose module is not
installed yet is recorded as ``ok`` with the message "skipped: stage not installed" instead of failing.
Every run writes a JobRun row (run id, status ok / failed / timeout / abandoned, message), and every log
line of the run carries its run id (radar.logging_setup).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from radar.errors import ConfigError
from radar.logging_setup import run_context

log = logging.getLogger(__name__)

OK, FAILED, TIMEOUT, ABANDONED = "ok", "failed", "timeout", "abandoned"
SKIPPED_NOT_INSTALLED = "skipped: stage not installed"
PIPELINE = ("classify", "incidents", "signals", "propose", "impact")


@dataclass(frozen=True)
class Stage:
    """A pipeline stage found by name at run time: the first of ``functions`` in ``module`` is called with the engine."""

    module: str
    functions: tuple[str, ...]

    def resolve(self) -> Callable[[Engine], Any] | None:
        try:
            mod = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            # Only the stage's own module missing means "not installed"; a missing dependency inside it is a bug.
            if exc.name and (exc.name == self.module or self.module.startswith(exc.name + ".")):
                return None
            raise
        for name in self.functions:
            func = getattr(mod, name, None)
            if callable(func):
                return func
        return None

    def __str__(self) -> str:
        return f"{self.module}.{'|'.join(self.functions)}"


# The stages other modules provide; the names are the contract with their authors.
STAGES: dict[str, Stage] = {
    "classify": Stage("radar.classify", ("classify_pending",)),
    "incidents": Stage("radar.incidents", ("link_incidents",)),
    "signals": Stage("radar.signals", ("compute_signals",)),
    "propose": Stage("radar.drafting", ("propose",)),
    "impact": Stage("radar.impact_run", ("estimate_pending", "run_pending", "run")),
    "digest": Stage("radar.digest", ("run_weekly",)),
}


@dataclass
class JobSpec:
    """One job the scheduler knows: what it runs and when."""

    name: str
    kind: str  # crawl, stage, chain
    description: str
    trigger: Any = None  # a 5-field cron string, an APScheduler trigger, or None (chained / manual only)
    timezone: str = "UTC"
    stage: Stage | None = None
    func: Callable[[Engine], Any] | None = None  # registered in-process jobs (plugins, tests)
    source: str | None = None
    time_limit: float | None = None

    @property
    def schedule_text(self) -> str:
        if self.trigger is None:
            return "after crawls" if self.name == "pipeline" else ("in pipeline" if self.name in PIPELINE else "manual")
        if isinstance(self.trigger, str):
            return f"{self.trigger} ({self.timezone})"
        return str(self.trigger)

    def make_trigger(self):
        if self.trigger is None or not isinstance(self.trigger, str):
            return self.trigger
        try:
            return cron_trigger(self.trigger, self.timezone)
        except ValueError as exc:
            raise ConfigError(f"job {self.name}: schedule {self.trigger!r} is not a valid cron expression: {exc}") from exc


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_weekdays(field_text: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) in APScheduler 3's terms (where 0 = Monday), as names."""
    if field_text == "*":
        return "*"
    out: list[str] = []
    for token in field_text.lower().split(","):
        if any(c.isalpha() for c in token):
            out.append(token)  # names mean the same to both
            continue
        spread, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if spread == "*":
            first, last = 0, 6
        elif "-" in spread:
            first, last = (int(x) for x in spread.split("-", 1))
        else:
            first = last = int(spread)
        if not (0 <= first <= 7 and 0 <= last <= 7 and first <= last and step >= 1):
            raise ValueError(f"day of week {token!r} is outside 0-7")
        for day in range(first, last + 1, step):
            name = _DAY_NAMES[day % 7]
            if name not in out:
                out.append(name)
    return ",".join(out)


def cron_trigger(expr: str, tz: str = "UTC"):
    """A CronTrigger for a standard 5-field crontab expression.

    Not CronTrigger.from_crontab: APScheduler 3 numbers weekdays from Monday = 0, so "0 7 * * 1" would
    fire on Tuesdays. Weekday numbers are translated to names here, which mean the same to both.
    One difference stays: with both day of month and day of week restricted, cron fires on either,
    APScheduler only on days matching both.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_crontab_weekdays(weekday),
                       timezone=tz)


@dataclass
class Outcome:
    run_id: str
    job: str
    status: str
    message: str = ""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


@dataclass
class ActiveRun:
    """A run in progress in this process, so a shutdown can wait for it or abandon it."""

    run_id: str
    job: str
    cancel: threading.Event = field(default_factory=threading.Event)
    child: subprocess.Popen | None = None


ACTIVE: dict[str, ActiveRun] = {}
_ACTIVE_LOCK = threading.Lock()
# Set while the scheduler stops: a scheduled job still queued in its pool declines to start and is
# listed in REFUSED, so the scheduler stores it to run on the next start.
STOPPING = threading.Event()
REFUSED: list[str] = []
_EXTRA: dict[str, JobSpec] = {}


def register(spec: JobSpec) -> None:
    """Add a job to the registry (plugins, tests): the same path the built-in jobs take."""
    _EXTRA[spec.name] = spec


def unregister(name: str) -> None:
    _EXTRA.pop(name, None)


def _time_limits(settings) -> dict[str, float]:
    """Per-source overrides of crawl_time_limit from the ``crawl_time_limits`` setting ("name=seconds, ...")."""
    limits: dict[str, float] = {}
    for part in str(settings.crawl_time_limits or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            limits[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"setting crawl_time_limits: {part.strip()!r} is not name=seconds "
                              f"(e.g. RADAR_CRAWL_TIME_LIMITS='eu_safety_gate_alerts=7200')") from None
    return limits


def registry(settings=None) -> dict[str, JobSpec]:
    """Every job by name: a crawl per enabled source, the stages, the pipeline chain, the digest, extras."""
    from crawlers.sources import load_sources
    from radar.settings import get_settings

    settings = settings or get_settings()
    limits = _time_limits(settings)
    jobs: dict[str, JobSpec] = {}
    for source in load_sources(settings.sources_path).values():
        if not source.enabled:
            continue
        jobs[f"crawl:{source.name}"] = JobSpec(
            name=f"crawl:{source.name}", kind="crawl", description=f"crawl {source.title}",
            trigger=source.schedule, timezone="UTC", source=source.name,
            time_limit=limits.get(source.name, float(settings.crawl_time_limit)))
    for name in PIPELINE:
        jobs[name] = JobSpec(name=name, kind="stage", description=f"{name} stage ({STAGES[name]})", stage=STAGES[name])
    jobs["pipeline"] = JobSpec(name="pipeline", kind="chain", description=" → ".join(PIPELINE) + ", after crawls")
    jobs["digest"] = JobSpec(name="digest", kind="stage", description=f"weekly digest ({STAGES['digest']})",
                             trigger=settings.digest_schedule, timezone=settings.timezone, stage=STAGES["digest"])
    jobs.update(_EXTRA)
    return jobs


def _host(origin: str) -> str:
    return f"{origin}@{socket.gethostname()}:{os.getpid()}"[:200]


def _summarise(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result[:2000]
    if dataclasses.is_dataclass(result):
        parts = []
        for f in dataclasses.fields(result):
            value = getattr(result, f.name)
            if isinstance(value, dict):
                value = sum(v for v in value.values() if isinstance(v, (int, float))) if value else 0
            elif isinstance(value, (list, tuple, set)):
                value = len(value)
            parts.append(f"{f.name}={value}")
        return ", ".join(parts)[:2000]
    return str(result)[:2000]


def _record_start(engine: Engine, run_id: str, job: str, origin: str) -> None:
    from radar.db import session_scope
    from radar.models import JobRun

    with session_scope(engine) as session:
        session.add(JobRun(run_id=run_id, job=job, host=_host(origin)))


def _record_end(engine: Engine, outcome: Outcome) -> None:
    from radar.db import session_scope
    from radar.models import JobRun, utcnow

    with session_scope(engine) as session:
        row = session.exec(select(JobRun).where(JobRun.run_id == outcome.run_id)).one()
        row.status = outcome.status
        row.message = outcome.message
        row.finished_at = utcnow()
        session.add(row)


def run_scheduled(name: str) -> Outcome:
    """What the scheduler's persistent job store refers to ("radar.jobs:run_scheduled", [name])."""
    return run_job(name, origin="scheduler")


def run_job(name: str, *, origin: str = "manual", engine: Engine | None = None, settings=None) -> Outcome:
    """Run one job now, record it as a JobRun and return how it went. Never raises for a job's own failure.

    ``origin`` "scheduler" (from run_scheduled) chains the pipeline after a crawl and is declined while
    no scheduler runs in this process (STOPPING).
    """
    from radar.db import get_engine
    from radar.settings import get_settings

    settings = settings or get_settings()
    engine = engine or get_engine()
    jobs = registry(settings)
    if name not in jobs:
        raise ConfigError(f"no job {name!r}; known jobs: {', '.join(sorted(jobs))} (see `radar jobs`)")
    spec = jobs[name]
    run_id = uuid.uuid4().hex
    if origin == "scheduler" and STOPPING.is_set():
        log.info("job %s not started: the scheduler is stopping; it runs on the next start", name)
        REFUSED.append(name)
        return Outcome(run_id, name, ABANDONED, "not started: the scheduler was stopping")
    active = ActiveRun(run_id, name)
    with _ACTIVE_LOCK:
        ACTIVE[run_id] = active
    outcome = Outcome(run_id, name, FAILED)
    with run_context(run_id, name):
        try:
            _record_start(engine, run_id, name, origin)
            log.info("job %s started (%s)", name, origin)
            if spec.kind == "crawl":
                outcome.status, outcome.message = _run_crawl(spec, active, engine, settings)
            elif spec.kind == "chain":
                outcome.status, outcome.message = _run_pipeline(engine, settings, origin, active)
            else:
                outcome.status, outcome.message = _run_stage(spec, engine)
            if active.cancel.is_set() and outcome.status == OK and spec.kind == "chain":
                outcome.status = ABANDONED
        except Exception as exc:
            log.exception("job %s failed", name)
            outcome.status, outcome.message = FAILED, f"{exc.__class__.__name__}: {exc}"[:2000]
        finally:
            outcome.seconds = time.monotonic() - outcome.started
            with _ACTIVE_LOCK:
                ACTIVE.pop(run_id, None)
            try:
                _record_end(engine, outcome)
            except Exception:
                log.exception("job %s: recording the end of run %s failed", name, run_id)
            level = logging.INFO if outcome.status == OK else logging.WARNING
            log.log(level, "job %s %s in %.1fs%s", name, outcome.status, outcome.seconds,
                    f": {outcome.message}" if outcome.message else "")
    if spec.kind == "crawl" and origin == "scheduler" and outcome.status != ABANDONED:
        from radar import scheduler

        scheduler.chain_after_crawl(name)
    return outcome


def _run_stage(spec: JobSpec, engine: Engine) -> tuple[str, str]:
    func = spec.func or (spec.stage.resolve() if spec.stage else None)
    if func is None:
        log.info("%s: %s (%s)", spec.name, SKIPPED_NOT_INSTALLED, spec.stage)
        return OK, f"{SKIPPED_NOT_INSTALLED} ({spec.stage})"
    return OK, _summarise(func(engine))


def _run_pipeline(engine: Engine, settings, origin: str, active: ActiveRun) -> tuple[str, str]:
    """The stages after a crawl, in order; a stage that fails stops the ones that need its output."""
    done = []
    for stage in PIPELINE:
        if active.cancel.is_set():
            return ABANDONED, f"stopped before {stage}; done: {', '.join(done) or 'nothing'}"
        outcome = run_job(stage, origin=origin, engine=engine, settings=settings)
        done.append(f"{stage} {outcome.status}")
        if outcome.status == ABANDONED:
            return ABANDONED, f"stopped at {stage}; done: {', '.join(done)}"
        if outcome.status != OK:
            return FAILED, f"{stage} {outcome.status} (run {outcome.run_id}): {outcome.message}; later stages not run"[:2000]
    return OK, "; ".join(done)


# -- crawls ---------------------------------------------------------------------------------------

_CHILD_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.\-]+): (.*)$")


def _relay(stream, problems: list[str]) -> None:
    """Re-log the child's log lines here, so they carry the run id and go where our log goes."""
    child_log = logging.getLogger("crawlers.child")
    level = logging.INFO
    for raw in stream:
        line = raw.rstrip("\n")
        if not line:
            continue
        match = _CHILD_LINE.match(line)
        if match:
            level = logging.getLevelName(match.group(1))
            line = f"{match.group(2)}: {match.group(3)}"
        # Continuation lines (tracebacks) keep the level of the line they belong to.
        child_log.log(level, "%s", line)
        if level >= logging.WARNING and len(problems) < 20:
            problems.append(line[:300])


def _stop_child(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM first (Scrapy then closes the spider and records the run), SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("crawl child %d ignored SIGTERM for %.0fs; killing it", proc.pid, grace)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _crawl_argv(spec: JobSpec, settings, run_id: str) -> tuple[list[str], str | None]:
    mirror = settings.crawl_mirror or None
    if settings.redis_url:
        from crawlers.distributed import worker_argv

        crawl_id = f"{spec.source}-{run_id}"
        return worker_argv([spec.source], crawl_id, mirror=mirror), crawl_id
    argv = [sys.executable, "-m", "crawlers.runner", "--source", spec.source]
    if mirror:
        argv += ["--mirror", mirror]
    return argv, None


def _run_crawl(spec: JobSpec, active: ActiveRun, engine: Engine, settings) -> tuple[str, str]:
    """The crawl in a child process, stopped at its time limit or when this process shuts down.

    Not crawlers.runner.crawl_subprocess: its subprocess.run kills with SIGKILL at the limit (the run
    record is never closed) and gives no handle to stop the child when `radar serve` stops.
    """
    from radar.models import utcnow

    limit = float(spec.time_limit or settings.crawl_time_limit)
    argv, crawl_id = _crawl_argv(spec, settings, active.run_id)
    started_at = utcnow() - timedelta(seconds=1)
    env = dict(os.environ, RADAR_RUN_ID=active.run_id)
    if crawl_id:
        from crawlers.distributed import announce

        announce(settings.redis_url, crawl_id, [spec.source], mirror=settings.crawl_mirror or None, ttl=limit)
    problems: list[str] = []
    # Own session (process group): a terminal's Ctrl-C or a stray signal reaches us, and we stop the child in order.
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    active.child = proc
    relay = threading.Thread(target=copy_context().run, args=(_relay, proc.stdout, problems),
                             name=f"relay-{spec.name}", daemon=True)
    relay.start()
    deadline = time.monotonic() + limit
    status = None
    try:
        while proc.poll() is None:
            if active.cancel.is_set():
                status = ABANDONED
                break
            if time.monotonic() >= deadline:
                status = TIMEOUT
                break
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            if status == TIMEOUT:
                log.warning("%s: crawl passed its time limit of %.0fs; stopping it", spec.name, limit)
            _stop_child(proc, float(settings.crawl_kill_grace))
        relay.join(timeout=5)
    if crawl_id:
        if status is None and proc.returncode == 0:
            status = _wait_for_workers(engine, spec.source, started_at, deadline, active)
        from crawlers.distributed import withdraw

        withdraw(settings.redis_url, crawl_id, drop_queue=status is not None)
    why = {TIMEOUT: f"stopped at its time limit of {limit:.0f}s", ABANDONED: "abandoned: the scheduler was stopping"}
    # Rows left 'running' belong to a crawl process that is gone (ours, stopped or crashed; or, in a
    # distributed crawl, a worker still running past the limit): close them so no run stays open.
    close_open = status is not None or proc.returncode != 0 or not crawl_id
    with Session(engine, expire_on_commit=False) as session:
        runs = _source_runs(session, spec.source, started_at)
        for run in runs:
            if run.status == "running" and close_open:
                run.status = "failed"
                run.finished_at = utcnow()
                run.messages = list(run.messages or []) + [f"crawl {why.get(status, 'ended without closing the run')}"]
                session.add(run)
        session.commit()
    if status:
        return status, f"{why[status]}; " + _runs_text(runs)
    if proc.returncode != 0:
        tail = "; ".join(problems[-3:])
        return FAILED, f"crawl process exited with status {proc.returncode}: {tail}"[:2000]
    if not runs:
        return FAILED, "the crawl recorded no source run: " + "; ".join(problems[-3:])
    return _judge(runs, spec.source, settings, distributed=bool(crawl_id)), _runs_text(runs)


def _source_runs(session: Session, source: str, since: datetime) -> list:
    from radar.models import SourceRun

    return list(session.exec(select(SourceRun).where(SourceRun.source == source, SourceRun.started_at >= since)
                             .order_by(SourceRun.id)))


def _wait_for_workers(engine: Engine, source: str, since: datetime, deadline: float, active: ActiveRun) -> str | None:
    """A distributed crawl is over when every worker's run of it has closed (or the limit is reached)."""
    while True:
        with Session(engine) as session:
            if not any(r.status == "running" for r in _source_runs(session, source, since)):
                return None
        if active.cancel.is_set():
            return ABANDONED
        if time.monotonic() >= deadline:
            return TIMEOUT
        time.sleep(0.5)


_BOUNDS_MESSAGE = re.compile(r"^yielded \d+ records, a healthy run yields")


def _judge(runs, source: str, settings, *, distributed: bool) -> str:
    """ok when every run is healthy. A distributed crawl's workers each record their share, so there the
    record-count bounds apply to the sum and a worker's own bounds verdict is ignored."""
    if not distributed:
        return OK if all(r.status in ("ok", "partial") for r in runs) else FAILED
    from crawlers.sources import load_sources

    bounds = load_sources(settings.sources_path)[source].bounds
    total = sum(r.records for r in runs)
    if not bounds.min_records <= total <= bounds.max_records:
        return FAILED
    for run in runs:
        other = [m for m in (run.messages or []) if not _BOUNDS_MESSAGE.match(m)]
        if run.status not in ("ok", "partial") and other:
            return FAILED
    return OK


def _runs_text(runs) -> str:
    if not runs:
        return "no source run recorded"
    parts = []
    for run in runs:
        text = (f"source run {run.id} {run.status}: {run.records} records ({run.new} new, {run.updated} updated), "
                f"{run.errors} errors")
        if run.status not in ("ok",) and run.messages:
            text += f" — {run.messages[-1]}"
        parts.append(text)
    return "; ".join(parts)[:2000]


# -- shutdown and takeover ------------------------------------------------------------------------


def running_here() -> list[ActiveRun]:
    with _ACTIVE_LOCK:
        return list(ACTIVE.values())


def abandon_all() -> None:
    """Ask every run in this process to stop: crawls stop their child, the pipeline stops between stages."""
    for active in running_here():
        active.cancel.set()


def mark_abandoned(engine: Engine, run_ids: list[str], why: str) -> int:
    """Close JobRun rows that will never finish (their process is exiting or gone)."""
    from radar.db import session_scope
    from radar.models import JobRun, utcnow

    if not run_ids:
        return 0
    with session_scope(engine) as session:
        rows = list(session.exec(select(JobRun).where(JobRun.run_id.in_(run_ids), JobRun.status == "running")))
        for row in rows:
            row.status, row.finished_at, row.message = ABANDONED, utcnow(), why
            session.add(row)
    return len(rows)


def mark_stale_scheduler_runs(engine: Engine) -> int:
    """On becoming leader: scheduler runs still 'running' belong to a leader that died, so they are abandoned."""
    from radar.models import JobRun

    mine = {a.run_id for a in running_here()}
    with Session(engine) as session:
        stale = [r.run_id for r in session.exec(select(JobRun).where(JobRun.status == "running"))
                 if r.host.startswith("scheduler@") and r.run_id not in mine]
    count = mark_abandoned(engine, stale, "abandoned: the scheduler running it stopped (found by the next leader)")
    if count:
        log.warning("marked %d run(s) of a previous leader as abandoned", count)
    return count


def last_runs(engine: Engine) -> dict[str, Any]:
    """The newest JobRun of each job."""
    from sqlalchemy import func

    from radar.models import JobRun

    with Session(engine) as session:
        newest = select(JobRun.job, func.max(JobRun.id).label("id")).group_by(JobRun.job).subquery()
        return {r.job: r for r in session.exec(select(JobRun).join(newest, JobRun.id == newest.c.id))}


def utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
