"""Leader election: of several `radar serve` processes, exactly one runs the scheduler.

On PostgreSQL the leader holds a session-level advisory lock (``pg_try_advisory_lock``) on a dedicated
connection for as long as it leads. When the leader dies, the server closes its connection and the lock
goes with it; each follower retries every ``leader_poll_seconds`` and the first to get the lock leads.
The leader checks its lock connection on the same beat and steps down at once if it is gone, so two
schedulers never fire jobs together for longer than one poll.

On SQLite there is no server to hold a lock, and the database is one file on one machine: the instance
that holds an exclusive ``flock`` on ``<database>.scheduler.lock`` beside the file is the leader (in
practice the single `radar serve`). A second instance on the same machine waits as a follower; the
operating system drops the lock when the leader exits, however it exits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

LOCK_NAME = "risk-radar:scheduler"


def lock_key(name: str = LOCK_NAME) -> int:
    """The signed 64-bit advisory-lock key for a name (stable across processes and versions)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class _PgLock:
    """A session advisory lock on its own, unpooled connection: closing the connection frees the lock."""

    def __init__(self, url: str, key: int) -> None:
        # NullPool: a pooled connection would go back to the pool still holding the lock.
        self.engine = create_engine(url, poolclass=NullPool, connect_args={
            "connect_timeout": 5,
            # Client-side keepalives notice a dead server; the server side is tcp_keepalives_idle (docs/deploy.md).
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        })
        self.key = key
        self.connection = None
        self.backend_pid: int | None = None

    def try_acquire(self) -> bool:
        if self.connection is None:
            self.connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.backend_pid = self.connection.execute(text("SELECT pg_backend_pid()")).scalar()
        got = bool(self.connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        return got

    def alive(self) -> bool:
        """True while the lock connection answers (and so the lock is still ours)."""
        try:
            held = self.connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint"), {"k": self.key}).scalar()
            return bool(held)
        except Exception as exc:  # any failure of the connection means the lock is gone with it
            log.warning("leader lock connection lost: %s", exc.__class__.__name__)
            return False

    def release(self) -> None:
        if self.connection is not None:
            try:
                self.connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception:  # already gone: the server freed the lock with the connection
                pass
            self.drop()

    def drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
        self.connection = None
        self.backend_pid = None

    def dispose(self) -> None:
        self.drop()
        self.engine.dispose()


class _FileLock:
    """An exclusive flock on a file: held until released or until the process exits."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd: int | None = None
        self.backend_pid = None

    def try_acquire(self) -> bool:
        if self.path is None:  # an in-memory database lives in this process only: it is its own leader
            return True
        import fcntl

        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
        return True

    def alive(self) -> bool:
        return True  # a flock cannot be taken away from a living process

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.drop()

    def drop(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None

    def dispose(self) -> None:
        self.drop()


def _lock_for(url: str, name: str):
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _PgLock(url, lock_key(name))
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return _FileLock(None)
        return _FileLock(Path(parsed.database).resolve().with_name(Path(parsed.database).name + ".scheduler.lock"))
    raise ValueError(f"leader election supports PostgreSQL and SQLite, not {parsed.get_backend_name()!r} ({url})")


class LeaderElector:
    """Campaigns for leadership in a background thread; calls ``on_elected`` / ``on_demoted`` on changes.

    ``poll`` seconds between attempts (followers) and between lock checks (the leader): a follower takes
    over at most about one poll after the leader's connection closed.
    """

    def __init__(self, url: str, *, poll: float = 5.0, name: str = LOCK_NAME,
                 on_elected: Callable[[], None] | None = None, on_demoted: Callable[[], None] | None = None) -> None:
        self.url = url
        self.poll = poll
        self.name = name
        self.on_elected = on_elected
        self.on_demoted = on_demoted
        self._lock = _lock_for(url, name)
        self._stop = threading.Event()
        self._elected = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def backend(self) -> str:
        return "postgresql advisory lock" if isinstance(self._lock, _PgLock) else "file lock (SQLite: one machine)"

    @property
    def is_leader(self) -> bool:
        return self._elected.is_set()

    @property
    def backend_pid(self) -> int | None:
        """PostgreSQL: the server process id of the lock connection (for pg_terminate_backend in tests)."""
        return self._lock.backend_pid

    def start(self) -> "LeaderElector":
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def wait_until_leader(self, timeout: float | None = None) -> bool:
        return self._elected.wait(timeout)

    def stop(self) -> None:
        """Stop campaigning; a leader steps down (``on_demoted``) and frees the lock for the others."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll + 10)
        if self.is_leader:
            self._step_down("stopping")
        self._lock.release()
        self._lock.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.is_leader:
                    if not self._lock.alive():
                        self._lock.drop()
                        self._step_down("lost the lock")
                elif self._lock.try_acquire():
                    self._become_leader()
            except Exception as exc:  # an unreachable database: stay a follower and try again
                log.warning("leader election: %s: %s; retrying in %.1fs", self.backend, exc.__class__.__name__, self.poll)
                self._lock.drop()
                if self.is_leader:
                    self._step_down("lock connection failed")
            self._stop.wait(self.poll)

    def _become_leader(self) -> None:
        self._elected.set()
        log.info("became the leader (%s, pid %d)", self.backend, os.getpid())
        if self.on_elected is None:
            return
        try:
            self.on_elected()
        except Exception:
            # A leader that cannot run the scheduler must not keep others from trying.
            log.exception("starting as leader failed; stepping down")
            self._elected.clear()
            self._lock.release()

    def _step_down(self, why: str) -> None:
        self._elected.clear()
        log.warning("no longer the leader: %s", why) if why != "stopping" else log.info("stepping down as leader")
        if self.on_demoted is not None:
            try:
                self.on_demoted()
            except Exception:
                log.exception("stopping as leader failed")
