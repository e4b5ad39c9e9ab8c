"""Leader election: one scheduler among several `radar serve`, and a takeover when the leader dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from radar.leader import LeaderElector, lock_key

REPO = Path(__file__).resolve().parents[1]
POLL = 0.3
TAKEOVER = POLL * 3 + 3  # the stated takeover time: a poll or so, plus connecting


class Watcher:
    """Counts elections and demotions of one elector."""

    def __init__(self, url: str) -> None:
        self.elected = threading.Event()
        self.demoted = threading.Event()
        self.elector = LeaderElector(url, poll=POLL, on_elected=self.elected.set, on_demoted=self.demoted.set)


def _wait(predicate, timeout: float) -> float | None:
    """Seconds until predicate() held, or None if it never did within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_lock_key_is_stable_and_fits_a_bigint():
    assert lock_key() == lock_key("risk-radar:scheduler")
    assert -(2**63) <= lock_key() < 2**63
    assert lock_key("a") != lock_key("b")


def test_sqlite_one_leader_per_database_file(sqlite_url):
    first, second = Watcher(sqlite_url), Watcher(sqlite_url)
    first.elector.start()
    assert first.elected.wait(5)
    second.elector.start()
    time.sleep(POLL * 3)
    assert not second.elector.is_leader  # the file lock is held by the first
    first.elector.stop()
    assert first.demoted.is_set()
    assert _wait(lambda: second.elector.is_leader, TAKEOVER) is not None
    second.elector.stop()


@pytest.mark.postgres
def test_postgres_one_leader_and_a_takeover_when_its_connection_dies(pg_url):
    a, b = Watcher(pg_url), Watcher(pg_url)
    a.elector.start()
    b.elector.start()
    assert _wait(lambda: a.elector.is_leader or b.elector.is_leader, 10) is not None
    time.sleep(POLL * 3)
    assert [a.elector.is_leader, b.elector.is_leader].count(True) == 1
    leader, follower = (a, b) if a.elector.is_leader else (b, a)
    assert not follower.elected.is_set()

    # The leader's server connection dies (as when its machine goes away): the lock goes with it.
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": leader.elector.backend_pid}).scalar()
    took = _wait(lambda: follower.elector.is_leader, TAKEOVER)
    assert took is not None, f"no takeover within {TAKEOVER}s"
    assert _wait(lambda: leader.demoted.is_set(), TAKEOVER) is not None  # the old leader noticed and stepped down
    assert not leader.elector.is_leader
    for w in (a, b):
        w.elector.stop()
    admin.dispose()


def _serve(url: str, tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log_path = tmp_path / f"{name}.log"
    env = dict(os.environ, RADAR_DATABASE_URL=url, RADAR_LEADER_POLL_SECONDS=str(POLL),
               RADAR_DATA_DIR=str(tmp_path / "var"), RADAR_SHUTDOWN_GRACE="1")
    proc = subprocess.Popen([sys.executable, "-m", "radar.cli", "serve", "--no-web"], env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, cwd=REPO)
    return proc, log_path


@pytest.mark.postgres
def test_two_serve_processes_one_scheduler_and_a_takeover_when_the_leader_is_killed(pg_url, tmp_path):
    from radar.db import get_engine

    get_engine(pg_url)  # migrate once, not in a race between the two
    procs = dict(first=_serve(pg_url, tmp_path, "first"), second=_serve(pg_url, tmp_path, "second"))
    try:
        def leaders() -> list[str]:
            return [name for name, (_, log) in procs.items() if "scheduler started" in log.read_text()]

        assert _wait(lambda: leaders(), 30) is not None, {n: log.read_text()[-2000:] for n, (_, log) in procs.items()}
        time.sleep(POLL * 4)
        assert len(leaders()) == 1
        [leader] = leaders()
        [follower] = [name for name in procs if name != leader]
        procs[leader][0].kill()  # no goodbye: SIGKILL, the server drops its connection and the lock
        procs[leader][0].wait(timeout=10)
        took = _wait(lambda: "scheduler started" in procs[follower][1].read_text(), TAKEOVER + 2)
        assert took is not None, procs[follower][1].read_text()[-3000:]
        engine = create_engine(pg_url)
        with engine.connect() as connection:
            stored = {row[0] for row in connection.execute(text("SELECT id FROM apscheduler_jobs"))}
        engine.dispose()
        assert "crawl:uk_opss_alerts" in stored and "digest" in stored
        procs[follower][0].send_signal(signal.SIGTERM)
        assert procs[follower][0].wait(timeout=20) == 0
        assert "radar serve stopped" in procs[follower][1].read_text()
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
