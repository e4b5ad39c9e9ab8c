"""Structured logs for long-running processes: a run id in every line of a job run, JSON when asked.

The run id lives in a context variable, so every log line emitted while a job runs — in its thread, or
relayed from its crawl child process — carries it, without any function passing it around. A
``logging.Filter`` on the handler copies it onto each record as ``record.run_id`` ("-" outside a run).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

run_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("radar_run_id", default="-")
job_var: contextvars.ContextVar[str] = contextvars.ContextVar("radar_job", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [run=%(run_id)s job=%(job)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(run_id)s %(job)s %(process)d %(threadName)s"

# Libraries that narrate every request or migration step at INFO; their warnings still show.
NOISY = ("scrapy", "twisted", "py.warnings", "filelock", "alembic.runtime.migration", "alembic.runtime.plugins", "apscheduler.executors",
         "uvicorn.access", "httpx", "apscheduler.scheduler")


class RunIdFilter(logging.Filter):
    """Puts the current run id and job name on every record (attach it to handlers, not loggers,
    so records from every logger get it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        record.job = job_var.get()
        return True


@contextmanager
def run_context(run_id: str, job: str) -> Iterator[None]:
    """Within the block, every log line of this thread (and of contexts copied from it) names the run."""
    run_token = run_id_var.set(run_id)
    job_token = job_var.set(job)
    try:
        yield
    finally:
        run_id_var.reset(run_token)
        job_var.reset(job_token)


def make_handler(json_lines: bool = False, stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_lines:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level",
                                                                       "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RunIdFilter())
    return handler


def setup_logging(level: str = "INFO", json_lines: bool = False, stream=None) -> None:
    """Replace the root handlers with one structured handler on stderr (or ``stream``)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(json_lines, stream))
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
