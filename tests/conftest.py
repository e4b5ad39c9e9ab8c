"""Shared fixtures: a fresh database per test on SQLite and, where it is reachable, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"
PG_ADMIN_URL = os.environ.get("RADAR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def real_data(*parts: str) -> Path:
    """A path under ../shared/data/real, or a clean skip where a fresh clone does not have it."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared beside the checkout)")
    return path


def _pg_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means: no PostgreSQL here
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__}); PostgreSQL tests skipped"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Each test gets its own data folder and fresh settings and engines."""
    from radar import db, settings

    monkeypatch.setenv("RADAR_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("RADAR_DATABASE_URL", raising=False)
    settings.get_settings.cache_clear()
    yield
    db.dispose_engines()
    settings.get_settings.cache_clear()


@pytest.fixture(scope="session")
def pg_server():
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server):
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"radar_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    from radar import db

    db.dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path, monkeypatch):
    """A SQLite file for one test, also put in the settings (child processes inherit it)."""
    url = f"sqlite:///{tmp_path / 'radar.db'}"
    monkeypatch.setenv("RADAR_DATABASE_URL", url)
    from radar import settings

    settings.get_settings.cache_clear()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, monkeypatch):
    """The same test on SQLite and on PostgreSQL; the database URL is also put in the settings."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    monkeypatch.setenv("RADAR_DATABASE_URL", url)
    from radar import settings

    settings.get_settings.cache_clear()
    return url


@pytest.fixture
def engine(db_url):
    from radar.db import get_engine

    return get_engine(db_url)


def bulk_archive(engine, n: int) -> None:
    """n notices in a regular pattern, inserted in bulk (for samples and estimates): every other one is
    about a USB charger, the rest about a plush toy; every third is classified cat.toys."""
    from datetime import date

    from sqlalchemy import insert

    from radar.models import Classification, Notice
    from radar.search import refresh_facet_keys

    rows = [dict(source="eu_safety_gate_alerts", source_id=f"b{i}", url=f"https://example.org/b{i}",
                 title=f"Notice {i}", text=("USB charger overheats" if i % 2 else "Plush toy seams open"),
                 published=date(2020 + i % 6, 1 + i % 12, 1), content_hash=f"{i:064d}", version=1,
                 category_labels=[], risk_labels=[], country_labels=[], labels={})
            for i in range(n)]
    with engine.begin() as connection:
        first = connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM notice").scalar()
        connection.execute(insert(Notice), rows)
        ids = [r[0] for r in connection.exec_driver_sql(f"SELECT id FROM notice WHERE id > {int(first)} ORDER BY id")]
        connection.execute(insert(Classification), [
            dict(notice_id=nid, notice_version=1, axis="category", value="cat.toys", method="text", evidence="",
                 pipeline_version="test")
            for i, nid in enumerate(ids) if i % 3 == 0])
        refresh_facet_keys(connection, ids)  # as the classify stage does after its bulk insert
