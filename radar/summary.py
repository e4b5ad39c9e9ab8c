"""Counts for the demo summary and `radar sources`: notices per source, category and market; last runs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from radar.models import Notice, SourceRun, counted_role_sql


@dataclass
class Summary:
    notices: int
    by_source: list[tuple[str, int]]
    by_category: list[tuple[str, int]]
    by_market: list[tuple[str, int]]


def _axis_counts(session: Session, axis: str, depth: int) -> list[tuple[str, int]]:
    """Notices per taxonomy id cut to `depth` dotted parts (cat.toys.magnetic → cat.toys at depth 2)."""
    rows = session.connection().execute(
        text(f"SELECT DISTINCT notice_id, value FROM classification WHERE axis = :axis AND {counted_role_sql('classification')}"),
        {"axis": axis},
    ).all()
    seen: set[tuple[int, str]] = set()
    counts: dict[str, int] = {}
    for notice_id, value in rows:
        key = ".".join(value.split(".")[:depth])
        if (notice_id, key) in seen:
            continue
        seen.add((notice_id, key))
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def summarise(engine: Engine) -> Summary:
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(Notice)).one()
        by_source = [(s, c) for s, c in session.exec(
            select(Notice.source, func.count()).group_by(Notice.source).order_by(func.count().desc(), Notice.source))]
        return Summary(total, by_source, _axis_counts(session, "category", 2), _axis_counts(session, "jurisdiction", 3))


def last_runs(engine: Engine) -> dict[str, SourceRun]:
    """The newest run of each source."""
    with Session(engine) as session:
        newest = select(SourceRun.source, func.max(SourceRun.id).label("id")).group_by(SourceRun.source).subquery()
        runs = session.exec(select(SourceRun).join(newest, SourceRun.id == newest.c.id))
        return {run.source: run for run in runs}
