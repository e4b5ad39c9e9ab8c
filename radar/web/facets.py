"""Facet counts for a search: how many matching notices fall in each source, market, category, hazard,
policy class, year and has-GTIN value, over the matching notices (or a sample of them).

The matching notices are exactly radar.search's: the same where_clause, in its "in" form (with words,
the full-text index matches words and filters together; without, the narrowest filter's id list comes
from the (axis, value, notice_id) index); a sample takes radar.search.sampled_where, which samples
whatever drives the search.

A value's count is the number of matching notices a filter on that value would keep: a notice counts
under each of its counted findings and each ancestor of them (juris.eu takes its members' notices),
once, read from the notice's facet keys (radar.search.facet_keys), not from its classification rows.

A search matching a large part of the archive would make exact facet counts cost a pass over most
of the archive. Above ``sample_above`` matches the counts come from radar.search's systematic
sample of notice ids (IdSample), scaled by total / matches in the sample, and marked approximate.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from radar.search import (Filters, count_matching, facet_token_value, id_range, id_sample, sampled_where, where_clause,
                          where_sql)

log = logging.getLogger(__name__)

# facet name in the URL → classification axis
AXIS_FACETS = {"market": "jurisdiction", "category": "category", "hazard": "hazard", "policy": "policy"}
FACET_VALUES = 12  # values shown per facet; the rest are reachable by typing an id in the URL


@dataclass
class FacetValue:
    value: str
    count: int


@dataclass
class Facets:
    total: int
    approximate: bool = False
    values: dict[str, list[FacetValue]] = field(default_factory=dict)  # source, market, category, hazard, policy
    years: list[FacetValue] = field(default_factory=list)  # newest first; "" for undated
    gtin: dict[str, int] = field(default_factory=lambda: {"yes": 0, "no": 0})
    seconds: float = 0.0
    timed_out: bool = False  # counting took longer than the time limit and was abandoned

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total, "approximate": self.approximate, "timed_out": self.timed_out,
            "facets": {name: [{"value": v.value, "count": v.count} for v in values] for name, values in self.values.items()},
            "years": [{"value": v.value, "count": v.count} for v in self.years],
            "gtin": dict(self.gtin),
        }


# -- facets ---------------------------------------------------------------------------------------


@contextmanager
def _time_limit(connection, engine: Engine, seconds: float | None):
    """Abort the statements run inside after `seconds` (SQLite progress handler, PostgreSQL statement_timeout)."""
    if not seconds:
        yield
        return
    if engine.dialect.name == "sqlite":
        raw = connection.connection.driver_connection
        deadline = time.monotonic() + seconds
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)
    else:
        connection.execute(text(f"SET LOCAL statement_timeout = {max(int(seconds * 1000), 1)}"))
        yield


def facet_counts(engine: Engine, query: str, filters: Filters | None = None, *, total: int | None = None,
                 sample_above: int | None = None, values_per_facet: int = FACET_VALUES,
                 keep: dict[str, list[str]] | None = None, time_limit: float | None = None,
                 match_ids: list[int] | None = None) -> Facets:
    """How many of the notices matching `query` and `filters` fall in each source, market, category,
    hazard, policy class, year and has-GTIN value. Counts are distinct notices, each counted under its
    findings' values and their ancestors, as the filters select them; a country a product only comes
    from (role origin) is not counted as its market, as in the market filter. Values in `keep`
    (facet name → values, e.g. the selected ones) are listed even when they are not among the top.

    With `time_limit` (seconds), counting that takes longer is abandoned: the result then has
    ``timed_out`` set and no values, and the page says so rather than keep the user waiting.

    `match_ids`, the search's SearchResult.match_ids (every match's id, when the search read them all),
    are counted instead of running the search again; above `sample_above` an evenly spaced part of them.
    """
    started = time.perf_counter()
    filters = filters or Filters()
    sqlite = engine.dialect.name == "sqlite"
    year = "substr(n.published, 1, 4)" if sqlite else "CAST(EXTRACT(YEAR FROM n.published) AS TEXT)"
    if match_ids is not None:
        total = len(match_ids)
    elif total is None:
        total = count_matching(engine, query, filters)
    if not total:
        return _facets(total, False, [], values_per_facet, keep, started)
    with engine.connect() as connection:
        sampled = bool(sample_above) and total > sample_above
        if match_ids is not None:
            ids = sorted(match_ids)
            if sampled:
                ids = ids[::math.ceil(len(ids) / sample_above)]
            # Read by id: a primary-key lookup each, the search is not run again.
            cte, from_sql, params = "", "notice n", {"ids": json.dumps(ids) if sqlite else ids}
            where = ["n.id IN (SELECT value FROM json_each(:ids))" if sqlite else "n.id = ANY(:ids)"]
        elif sampled and (sample := id_sample(id_range(connection), sample_above / total)) is not None:
            cte, from_sql, where, params = sampled_where(engine, query, filters, sample, matches=total, columns=("facet_keys",))
        else:
            sampled = False  # not asked for, or the archive emptied meanwhile: nothing to sample
            joins, where, params, _ = where_clause(engine, query, filters, form="in")
            cte, from_sql = "", f"notice n {joins}"
        # The matching notices' source, year, GTIN and facet keys (radar.search.facet_keys: a notice's
        # counted findings and their ancestors, one each, so a value's count is what a filter on it finds),
        # counted here: splitting the keys in Python costs less than in either database's SQL.
        sql = (f"{'WITH ' + cte if cte else ''} SELECT n.source, {year} AS year, "
               f"CASE WHEN n.gtin IS NOT NULL AND n.gtin <> '' THEN 1 ELSE 0 END AS has_gtin, n.facet_keys "
               f"FROM {from_sql} {where_sql(where)}")
        try:
            with _time_limit(connection, engine, time_limit):
                rows = connection.execute(text(sql), params).all()
        except OperationalError as exc:
            if not _interrupted(exc):
                raise
            connection.rollback()
            log.info("facet counts of %r abandoned after %.1f s", query[:80], time.perf_counter() - started)
            return Facets(total=total, approximate=sampled, timed_out=True, seconds=time.perf_counter() - started)
    return _facets(total, sampled, rows, values_per_facet, keep, started)


def _facets(total: int, sampled: bool, rows, values_per_facet: int, keep: dict[str, list[str]] | None,
            started: float) -> Facets:
    """Facets of the matching notices' rows (source, year, has GTIN, facet keys), scaled up to `total`
    when the rows are a sample."""
    scale = (total / len(rows)) if sampled and rows else 1.0
    by_source: Counter = Counter()
    by_year: Counter = Counter()
    by_gtin: Counter = Counter()
    for source, year_value, has_gtin, _ in rows:
        by_source[source] += 1
        by_year[str(year_value or "")] += 1
        by_gtin["yes" if has_gtin else "no"] += 1
    by_axis: dict[str, dict[str, int]] = {axis: {} for axis in AXIS_FACETS.values()}
    for token, hits in Counter(" ".join(row[3] for row in rows).split()).items():
        found = facet_token_value(token)
        # A key for the id's first segment alone ("cat") names the axis's prefix, not a taxonomy node.
        if found and found[0] in by_axis and "." in found[1]:
            by_axis[found[0]][found[1]] = hits

    def scaled(counts) -> dict[str, int]:
        return {k: round(v * scale) for k, v in counts.items()}

    facets = Facets(total=total, approximate=sampled, gtin={"yes": 0, "no": 0, **scaled(by_gtin)})
    keep = keep or {}
    facets.values["source"] = _top(scaled(by_source), values_per_facet, keep.get("source", []))
    for name, axis in AXIS_FACETS.items():
        facets.values[name] = _top(scaled(by_axis[axis]), values_per_facet, keep.get(name, []))
    facets.years = [FacetValue(y, c) for y, c in sorted(scaled(by_year).items(), key=lambda kv: kv[0] or "0000", reverse=True)]
    facets.seconds = time.perf_counter() - started
    return facets


def _interrupted(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "interrupted" in message or "statement timeout" in message or "canceling statement" in message


def _top(counts: dict[str, int], n: int, keep: list[str]) -> list[FacetValue]:
    top = [FacetValue(v, c) for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
    shown = {f.value for f in top}
    return top + [FacetValue(v, counts.get(v, 0)) for v in keep if v not in shown]
