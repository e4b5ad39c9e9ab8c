"""Verbs for unattended operation: `radar serve`, `radar jobs`, `radar run`, `radar worker`."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

import click

log = logging.getLogger(__name__)


def _structured_logging(json_logs: bool | None) -> None:
    from radar.logging_setup import setup_logging
    from radar.settings import get_settings

    settings = get_settings()
    level = logging.getLevelName(logging.getLogger().level) if logging.getLogger().level else settings.log_level
    setup_logging(level, json_lines=settings.log_json if json_logs is None else json_logs)


def _load_web_app():
    """The web app from radar.web.app.create_app(), or None where that module is not installed."""
    import importlib.util

    try:
        found = importlib.util.find_spec("radar.web.app")
    except ModuleNotFoundError:
        found = None
    if found is None:
        return None
    from radar.web.app import create_app  # an error inside the web app is a real error: let it show

    return create_app()


class _Stopper:
    """First SIGTERM/SIGINT: stop cleanly. Second: exit at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.event.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(1)
        log.info("%s received: stopping", signal.Signals(signum).name)
        self.event.set()


@click.command()
@click.option("--no-web", is_flag=True, help="Run the scheduler only, without the web app.")
@click.option("--host", default=None, help="Address of the web app (default: the web_host setting).")
@click.option("--port", type=int, default=None, help="Port of the web app (default: the web_port setting).")
@click.option("--json-logs/--text-logs", default=None, help="Log JSON lines (default: the log_json setting).")
def serve(no_web: bool, host: str | None, port: int | None, json_logs: bool | None) -> None:
    """Run the scheduler and the web app.

    Several `radar serve` may run against one PostgreSQL database: one is
    elected leader (advisory lock) and runs the scheduler; the others serve
    the web app and take over within leader_poll_seconds when the leader
    dies. On SQLite one instance per machine leads. SIGTERM lets a running
    job finish for shutdown_grace seconds, then abandons it (it runs again on
    the next start).
    """
    from radar import jobs
    from radar.db import get_engine
    from radar.leader import LeaderElector
    from radar.scheduler import RadarScheduler
    from radar.settings import get_settings

    _structured_logging(json_logs)
    settings = get_settings()
    engine = get_engine()
    stopper = _Stopper()
    stopper.install()
    state: dict[str, RadarScheduler | None] = {"scheduler": None}
    state_lock = threading.Lock()

    def elected() -> None:
        with state_lock:
            if stopper.event.is_set():
                return
            state["scheduler"] = RadarScheduler(engine, settings).start()

    def demoted() -> None:
        # Lost the lock: another instance may lead already, so stop firing at once.
        with state_lock:
            sched, state["scheduler"] = state["scheduler"], None
        if sched is not None:
            sched.stop(grace=0)

    elector = LeaderElector(settings.database, poll=float(settings.leader_poll_seconds),
                            on_elected=elected, on_demoted=demoted)
    log.info("radar serve: pid %d, leader election by %s, polling every %.1fs", os.getpid(), elector.backend,
             elector.poll)
    elector.start()

    server = web_thread = None
    if not no_web:
        app = _load_web_app()
        if app is None:
            log.warning("the web app (radar.web.app) is not installed: serving the scheduler alone")
        else:
            import uvicorn

            config = uvicorn.Config(app, host=host or settings.web_host, port=port or int(settings.web_port),
                                    log_config=None, lifespan="on")
            server = uvicorn.Server(config)
            # In a thread, uvicorn leaves the signals to us, so one SIGTERM stops both in order.
            web_thread = threading.Thread(target=server.run, name="web", daemon=True)
            web_thread.start()
            log.info("web app at http://%s:%d", config.host, config.port)

    stopper.event.wait()
    with state_lock:
        sched, state["scheduler"] = state["scheduler"], None
    if sched is not None:
        sched.stop(grace=float(settings.shutdown_grace))
    elector.stop()
    if server is not None:
        server.should_exit = True
        web_thread.join(timeout=10)
    log.info("radar serve stopped")
    if jobs.running_here():
        # An in-process stage cannot be interrupted; its open transaction is rolled back when we exit.
        logging.shutdown()
        os._exit(0)


@click.command("jobs")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def jobs_command(as_json: bool) -> None:
    """List jobs with their last and next runs.

    Crawls run on their source's cron schedule (UTC); the pipeline (classify,
    incidents, signals, propose, impact) runs chain_delay seconds after the
    last crawl of a burst; the digest runs on digest_schedule.
    """
    from radar.db import get_engine
    from radar.scheduler import list_jobs

    rows = list_jobs(get_engine())
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'job':<30} {'schedule':<28} {'last run':<26} {'status':<10} next run")
    for row in rows:
        nxt = row["next_run"] or "-"
        if row["next_run"] and row["next_run_from"] == "computed":
            nxt += " (not yet stored)"
        click.echo(f"{row['job']:<30} {row['schedule'][:28]:<28} {(row['last_run'] or '-'):<26} "
                   f"{(row['last_status'] or 'never run'):<10} {nxt}")
        if row["last_status"] not in (None, "ok", "running") and row["last_message"]:
            click.echo(f"    ! {row['last_message'][:200]}")


@click.command("run")
@click.argument("job")
def run_command(job: str) -> None:
    """Run one job now and record it.

    JOB is a name from `radar jobs`: crawl:<source>, classify, incidents,
    signals, propose, impact, pipeline or digest. A crawl keeps its time
    limit. Ctrl-C stops it cleanly (recorded as abandoned). Exits non-zero
    unless the run ended ok.
    """
    from radar import jobs

    _structured_logging(None)

    def _cancel(signum, _frame) -> None:
        if any(a.cancel.is_set() for a in jobs.running_here()):
            raise KeyboardInterrupt
        click.echo(f"{signal.Signals(signum).name}: stopping {job} (again to interrupt at once)", err=True)
        jobs.abandon_all()

    signal.signal(signal.SIGINT, _cancel)
    signal.signal(signal.SIGTERM, _cancel)
    outcome = jobs.run_job(job, origin="manual")
    click.echo(f"{job}: {outcome.status} in {outcome.seconds:.1f}s (run {outcome.run_id})")
    if outcome.message:
        click.echo(f"  {outcome.message}")
    if outcome.status != jobs.OK:
        sys.exit(1)


@click.command()
@click.option("--crawl-id", help="Join this one crawl and exit when it is done (default: serve every announced crawl).")
@click.option("--source", "sources", multiple=True, help="With --crawl-id: the sources of the crawl; repeatable.")
@click.option("--mirror", help="With --crawl-id: fetch from this local mirror.")
@click.option("--parallel", type=int, default=None, help="Crawls joined at once (default: the worker_parallel setting).")
@click.option("--json-logs/--text-logs", default=None, help="Log JSON lines (default: the log_json setting).")
def worker(crawl_id: str | None, sources: tuple[str, ...], mirror: str | None, parallel: int | None,
           json_logs: bool | None) -> None:
    """Crawl as one of several workers sharing a Redis queue.

    Needs the redis_url setting. Without --crawl-id the worker runs until
    stopped, joining every crawl the scheduler announces; several workers
    on several machines split each crawl, and the shared duplicate filter
    keeps any page from being fetched twice.
    """
    from radar.errors import ConfigError
    from radar.settings import get_settings

    _structured_logging(json_logs)
    settings = get_settings()
    if not settings.redis_url:
        raise ConfigError("`radar worker` needs Redis: set RADAR_REDIS_URL, e.g. redis://127.0.0.1:6379/0")
    if crawl_id:
        import subprocess

        from crawlers.distributed import worker_argv

        if not sources:
            raise click.UsageError("--crawl-id needs at least one --source")
        code = subprocess.call(worker_argv(sources, crawl_id, mirror=mirror))
        if code:
            sys.exit(code)
        return
    from crawlers.distributed import Worker

    runner = Worker(settings.redis_url, poll=float(settings.worker_poll_seconds),
                    parallel=parallel or int(settings.worker_parallel))
    stopper = _Stopper()
    stopper.install()
    threading.Thread(target=lambda: (stopper.event.wait(), runner.stopping.set()), daemon=True).start()
    runner.run()


COMMANDS = [serve, jobs_command, run_command, worker]
