"""The database: engine, schema migrations (Alembic) and sessions, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session, create_engine

from radar.errors import StorageError
from radar.settings import get_settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web pages read while a crawl writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A search fetches notice rows at random (each match's date, GTIN, source): through a memory map that
    # costs about half what it costs through read() into SQLite's small page cache.
    cursor.execute(f"PRAGMA mmap_size={max(int(get_settings().sqlite_mmap_mb), 0) * 1024 * 1024}")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine for the URL (default: the database setting). SQLite folders are created as needed."""
    url = url or get_settings().database
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"database URL {url!r} is not valid: {exc}") from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        # JIT compiling pays for long analytical queries; Risk Radar's are short, and PostgreSQL's cost
        # estimates for a search over a million notices would set JIT off compiling for up to a second per query.
        # A search ANDs bitmaps of hundreds of thousands of notices (a common word, a broad filter): with
        # the default 4 MB of work_mem they turn lossy and every notice on their pages is checked again.
        connect_args = {"options": "-c jit=off -c work_mem=32MB"} if parsed.get_backend_name() == "postgresql" else {}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        raise StorageError(
            f"database URL {parsed.render_as_string(hide_password=True)!r} names a database this install cannot use "
            f"({exc}); use sqlite:///path or postgresql+psycopg://user@host/db"
        ) from exc


# Dialect-specific search objects made by hand: full text in revision 0002, indexes in revision 0004,
# the facet keys' tsvector in revision 0005.
HAND_MADE = {"search_vector", "ix_notice_search_vector", "ix_classification_axis_value_notice",
             "ix_classification_notice_axis_value", "ix_notice_published_order", "ix_notice_sample",
             "facet_vector", "ix_notice_facet_vector"}


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out of autogenerate what the models do not describe: HAND_MADE search objects, and more."""
    if type_ == "table" and name and name.startswith("notice_fts"):
        return False
    if name in HAND_MADE:
        return False
    if type_ == "table" and name == "apscheduler_jobs":  # APScheduler's job store owns this table
        return False
    return True


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to run on every start."""
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Several instances starting at once must not run the same migration twice: the first
                # takes this transaction-scoped lock, the others wait and then find nothing to do.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7215559, 1)")
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise StorageError(f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: {exc.orig}") from exc


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    """The migrated engine for the URL, created once per process."""
    url = url or get_settings().database
    if url not in _engines:
        engine = make_engine(url)
        upgrade(engine)
        _engines[url] = engine
    return _engines[url]


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@event.listens_for(Session, "after_flush")
def _refresh_facet_keys(session: Session, _flush_context) -> None:
    """Findings written through the ORM keep their notice's facet keys in step, in the same transaction
    (bulk writers, such as the classify stage, call radar.search.refresh_facet_keys themselves)."""
    from radar.models import Classification
    from radar.search import refresh_facet_keys

    changed = [obj for obj in (*session.new, *session.dirty, *session.deleted) if isinstance(obj, Classification)]
    if changed:
        refresh_facet_keys(session.connection(), {obj.notice_id for obj in changed if obj.notice_id is not None})
