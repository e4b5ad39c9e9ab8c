"""The web search: one page of hits, the total, and facet counts (GROUP BY over the matching notices).

The hits are exactly radar.search's: the same parsed query, the same FTS5 / tsquery expression, the
same filters, score, snippet and order, built from radar.search's own pieces. The web adds two filters
(policy class, has a GTIN) and makes counting cheaper on SQLite: radar.search checks each filter with a
correlated EXISTS per notice, which finds a first page quickly (it stops after `limit` hits, walking the
date index) but makes count(*) probe every notice in the archive. Here the count and the facets use
``notice.id IN (SELECT notice_id FROM classification WHERE axis = … AND value in a range)``, which
SQLite answers from the (axis, value) index; the range [id, id + "/") is exactly "the id or any id
below it" for taxonomy ids (letters, digits, "_" and "."). PostgreSQL plans EXISTS as a semi-join
already, so it keeps radar.search's form.

A search matching a large part of the archive would make exact facet counts cost a pass over most
classification rows. Above ``sample_above`` matches the counts come from a systematic sample: evenly
spaced blocks of consecutive notice ids (consecutive rows sit together on disk, so a block costs few
page reads), scaled by total / matches in the sample, and marked approximate.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from radar.errors import SearchQueryError
from radar.search import (
    MARK_END,
    MARK_START,
    Filters,
    SearchResult,
    fts5_expression,
    hits_from_rows,
    parse_query,
    tsquery_expression,
)

log = logging.getLogger(__name__)

# facet name in the URL → classification axis
AXIS_FACETS = {"market": "jurisdiction", "category": "category", "hazard": "hazard", "policy": "policy"}
FACET_VALUES = 12  # values shown per facet; the rest are reachable by typing an id in the URL
MAX_SAMPLE_BLOCKS = 200
MIN_SAMPLE_BLOCK = 256


@dataclass
class WebFilters(Filters):
    policies: list[str] = field(default_factory=list)  # policy class ids; descendants included
    has_gtin: bool | None = None  # True: only notices with a GTIN; False: only without

    def base(self) -> Filters:
        return Filters(jurisdictions=list(self.jurisdictions), categories=list(self.categories),
                       hazards=list(self.hazards), sources=list(self.sources), since=self.since, until=self.until)

    @property
    def beyond_search(self) -> bool:
        """Whether these filters need more than radar.search.search can do."""
        return bool(self.policies) or self.has_gtin is not None


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


# -- the WHERE clause ------------------------------------------------------------------------------


def _axis_clause(axis: str, values: list[str], params: dict[str, Any], form: str, ident: str = "n.id") -> str:
    # A country a product only comes from is not a market it was flagged in (as in radar.search).
    role = " AND (c.role IS NULL OR c.role <> 'origin')" if axis == "jurisdiction" else ""
    ors = []
    for i, value in enumerate(values):
        key = f"w_{axis}_{i}"
        if form == "in":
            params[key], params[f"{key}_end"] = value, value + "/"
            ors.append(f"(c.value >= :{key} AND c.value < :{key}_end)")
        else:
            params[key] = value
            params[f"{key}_like"] = value.replace("%", "").replace("_", r"\_") + ".%"
            ors.append(f"(c.value = :{key} OR c.value LIKE :{key}_like ESCAPE '\\')")
    condition = f"c.axis = '{axis}'{role} AND ({' OR '.join(ors)})"
    if form == "in":
        return f"{ident} IN (SELECT c.notice_id FROM classification c WHERE {condition})"
    return f"EXISTS (SELECT 1 FROM classification c WHERE c.notice_id = {ident} AND {condition})"


def where_clause(engine: Engine, query: str, filters: WebFilters, *, form: str = "exists") -> tuple[str, list[str], dict[str, Any], Any]:
    """(joins, conditions, parameters, parsed query) selecting the notices `n` a search matches.

    form "exists" is radar.search's: a correlated EXISTS per notice, best for finding one page of a search
    without words (it walks the date index and stops). "in" builds each filter's id list from the
    (axis, value) index: best for counting, and for a page of a search with words on SQLite. There,
    with words, the conditions that need only the id are put on the FTS row (f.rowid), so the notice row
    is fetched only for notices that passed them.
    """
    parsed = parse_query(query)
    params: dict[str, Any] = {}
    where: list[str] = []
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise SearchQueryError(f"search is implemented for SQLite and PostgreSQL, not {dialect}")
    if dialect != "sqlite":
        form = "exists"
    fts = dialect == "sqlite" and parsed.positive
    # The unary + keeps SQLite from handing "rowid IN (…)" to FTS5 as a lookup per listed id (a MATCH
    # run for each); the match list is walked once and each rowid checked against the id list.
    ident = "+f.rowid" if fts and form == "in" else "n.id"
    axis_filters = [(axis, values) for axis, values in (("category", filters.categories), ("hazard", filters.hazards),
                                                         ("policy", filters.policies), ("jurisdiction", filters.jurisdictions)) if values]
    # One id list is enough to drive a count; building a second one for a broad filter (juris.eu: most
    # of the archive) costs more than probing it per notice. The narrowest guess drives: the most
    # specific id (most dots), and markets last, as they are few and broad.
    axis_filters.sort(key=lambda item: -min(v.count(".") for v in item[1]))
    for i, (axis, values) in enumerate(axis_filters):
        where.append(_axis_clause(axis, values, params, form if i == 0 else "exists", ident if i == 0 else "n.id"))
    if filters.sources:
        for i, source in enumerate(filters.sources):
            params[f"w_source_{i}"] = source
        where.append(f"n.source IN ({', '.join(f':w_source_{i}' for i in range(len(filters.sources)))})")
    if filters.since:
        params["since"] = filters.since
        where.append("n.published >= :since")
    if filters.until:
        params["until"] = filters.until
        where.append("n.published <= :until")
    if filters.has_gtin is True:
        where.append("(n.gtin IS NOT NULL AND n.gtin <> '')")
    elif filters.has_gtin is False:
        where.append("(n.gtin IS NULL OR n.gtin = '')")
    joins = ""
    if fts:
        params["match"] = fts5_expression(parsed)
        joins = "JOIN notice_fts f ON f.rowid = n.id"
        where.append("notice_fts MATCH :match")
    elif dialect == "sqlite" and parsed.excluded:
        params["match"] = " OR ".join(f'"{w}"*' for w in parsed.excluded)
        where.append("n.id NOT IN (SELECT rowid FROM notice_fts WHERE notice_fts MATCH :match)")
    elif dialect == "postgresql" and not parsed.empty:
        params["tsq"] = tsquery_expression(parsed)
        where.append("n.search_vector @@ to_tsquery('simple', :tsq)")
    return joins, where, params, parsed


def _needs_notice_row(filters: WebFilters) -> bool:
    return bool(filters.sources or filters.since or filters.until or filters.has_gtin is not None)


def _where_sql(where: list[str]) -> str:
    return f"WHERE {' AND '.join(where)}" if where else ""


# -- hits and totals -------------------------------------------------------------------------------


def run_search(engine: Engine, query: str, filters: WebFilters | None = None, *, sort: str = "date", limit: int = 20,
               offset: int = 0, snippet_words: int = 16) -> SearchResult:
    """radar.search.search's hits and total, plus the policy-class and has-GTIN filters."""
    if sort not in ("date", "relevance"):
        raise SearchQueryError(f"sort must be 'date' or 'relevance', not {sort!r}")
    if limit < 1 or limit > 1000 or offset < 0:
        raise SearchQueryError("limit must be 1..1000 and offset not negative")
    filters = filters or WebFilters()
    # With words on SQLite the FTS match list drives the query, and id lists beat a probe per match;
    # without words, EXISTS lets the date-ordered scan stop after one page.
    form = "in" if engine.dialect.name == "sqlite" and parse_query(query).positive else "exists"
    joins, where, params, parsed = where_clause(engine, query, filters, form=form)
    params.update({"mark_start": MARK_START, "mark_end": MARK_END, "limit": limit, "offset": offset})
    score, snippet = "NULL", "substr(n.text, 1, 240)"
    # radar.search.search's score and snippet expressions, so both show the same thing.
    if engine.dialect.name == "sqlite" and parsed.positive:
        score = "-bm25(notice_fts, 4.0, 1.0)"
        params.update({"ellipsis": "…", "snippet_words": snippet_words})
        snippet = "snippet(notice_fts, 1, :mark_start, :mark_end, :ellipsis, :snippet_words)"
    elif engine.dialect.name == "postgresql" and not parsed.empty:
        score = "ts_rank(n.search_vector, to_tsquery('simple', :tsq))"
        if parsed.positive:
            params["headline_opts"] = (
                f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={snippet_words + 4}, "
                f"MinWords={max(snippet_words // 2, 3)}, ShortWord=2, MaxFragments=1, FragmentDelimiter=…"
            )
            snippet = "ts_headline('simple', translate(n.text, '<>', '  '), to_tsquery('simple', :tsq), :headline_opts)"
    order = "n.published DESC NULLS LAST, n.id DESC"
    if sort == "relevance" and score != "NULL":
        order = f"{score} DESC, {order}"
    sql = (f"SELECT n.id, n.source, n.source_id, n.title, n.url, n.published, {snippet} AS snippet, {score} AS score "
           f"FROM notice n {joins} {_where_sql(where)} ORDER BY {order} LIMIT :limit OFFSET :offset")
    with engine.connect() as connection:
        rows = connection.execute(text(sql), params).all()
        if offset == 0 and len(rows) < limit:
            total = len(rows)  # the whole result is on this page: nothing left to count
        else:
            total = _count(connection, engine, query, filters)
        hits = hits_from_rows(connection, rows)
    return SearchResult(query=query, total=total, hits=hits, offset=offset, limit=limit)


def _count(connection, engine: Engine, query: str, filters: WebFilters) -> int:
    joins, where, params, _ = where_clause(engine, query, filters, form="in")
    if joins and not _needs_notice_row(filters):
        # Every condition is on the FTS row: count there, without fetching a single notice row.
        return connection.execute(text(f"SELECT count(*) FROM notice_fts f {_where_sql(where)}"), params).scalar_one()
    return connection.execute(text(f"SELECT count(*) FROM notice n {joins} {_where_sql(where)}"), params).scalar_one()


def count_matching(engine: Engine, query: str, filters: WebFilters | None = None) -> int:
    with engine.connect() as connection:
        return _count(connection, engine, query, filters or WebFilters())


# -- facets ---------------------------------------------------------------------------------------


def _sample_blocks(connection, total: int, sample_above: int) -> list[tuple[int, int]]:
    """Evenly spaced id ranges holding about sample_above / total of the archive."""
    # Two scalar subqueries: SQLite answers a lone min() or max() of the rowid from the b-tree's ends.
    low, high = connection.execute(text("SELECT (SELECT min(id) FROM notice), (SELECT max(id) FROM notice)")).one()
    if low is None:
        return []
    span = high - low + 1
    fraction = min(1.0, sample_above / total)
    block = max(MIN_SAMPLE_BLOCK, math.ceil(span * fraction / MAX_SAMPLE_BLOCKS))
    blocks = max(1, round(span * fraction / block))
    stride = span / blocks
    return [(low + int(i * stride), low + int(i * stride) + block - 1) for i in range(blocks)]


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


def facet_counts(engine: Engine, query: str, filters: WebFilters | None = None, *, total: int | None = None,
                 sample_above: int | None = None, values_per_facet: int = FACET_VALUES,
                 keep: dict[str, list[str]] | None = None, time_limit: float | None = None) -> Facets:
    """How many of the notices matching `query` and `filters` fall in each source, market, category,
    hazard, policy class, year and has-GTIN value. Counts are distinct notices; a country a product only
    comes from (role origin) is not counted as its market, as in the market filter. Values in `keep`
    (facet name → values, e.g. the selected ones) are listed even when they are not among the top.

    With `time_limit` (seconds), counting that takes longer is abandoned: the result then has
    ``timed_out`` set and no values, and the page says so rather than keep the user waiting.
    """
    started = time.perf_counter()
    filters = filters or WebFilters()
    joins, where, params, _ = where_clause(engine, query, filters, form="in")
    sqlite = engine.dialect.name == "sqlite"
    year = "substr(n.published, 1, 4)" if sqlite else "CAST(EXTRACT(YEAR FROM n.published) AS TEXT)"
    axes = ", ".join(f"'{axis}'" for axis in AXIS_FACETS.values())
    with engine.connect() as connection:
        if total is None:
            total = connection.execute(text(f"SELECT count(*) FROM notice n {joins} {_where_sql(where)}"), params).scalar_one()
        sampled = bool(sample_above) and total > sample_above
        if sampled:
            blocks = _sample_blocks(connection, total, sample_above)
            if joins:
                # Words: FTS5 walks its match list anyway; one arithmetic test per match picks the same
                # blocks, on the FTS row, before any notice row is read.
                low, period, size = blocks[0][0], max(int(blocks[1][0] - blocks[0][0]) if len(blocks) > 1 else 1, 1), blocks[0][1] - blocks[0][0] + 1
                params.update(s_low=low, s_period=max(period, size), s_size=size)
                where = where + ["((+f.rowid - :s_low) % :s_period) < :s_size"]
            else:
                # No words: the ranges are rowid seeks, so only the sampled notices are read at all.
                for i, (lo, hi) in enumerate(blocks):
                    params[f"s_lo_{i}"], params[f"s_hi_{i}"] = lo, hi
                where = where + ["(" + " OR ".join(f"n.id BETWEEN :s_lo_{i} AND :s_hi_{i}" for i in range(len(blocks))) + ")"]
        # One statement, the matching notices read once (MATERIALIZED) and grouped two ways. SQLite:
        # CROSS JOIN keeps the join order, walking the matching notices and fetching their findings by
        # notice_id, rather than scanning every finding of an axis and probing the match set.
        join = "CROSS JOIN" if sqlite else "JOIN"
        sql = (
            f"WITH m AS MATERIALIZED (SELECT n.id, n.source, {year} AS year, "
            f"CASE WHEN n.gtin IS NOT NULL AND n.gtin <> '' THEN 1 ELSE 0 END AS has_gtin "
            f"FROM notice n {joins} {_where_sql(where)}) "
            f"SELECT 'notice' AS kind, m.source AS a, m.year AS b, m.has_gtin AS g, count(*) AS hits FROM m "
            f"GROUP BY m.source, m.year, m.has_gtin "
            f"UNION ALL "
            f"SELECT 'finding', c.axis, c.value, 0, count(DISTINCT c.notice_id) FROM m {join} classification c "
            f"ON c.notice_id = m.id WHERE c.axis IN ({axes}) AND (c.role IS NULL OR c.role <> 'origin') "
            f"GROUP BY c.axis, c.value"
        )
        try:
            with _time_limit(connection, engine, time_limit):
                rows = connection.execute(text(sql), params).all()
        except OperationalError as exc:
            if not _interrupted(exc):
                raise
            connection.rollback()
            log.info("facet counts of %r abandoned after %.1f s", query[:80], time.perf_counter() - started)
            return Facets(total=total, approximate=sampled, timed_out=True, seconds=time.perf_counter() - started)
    notice_rows = [(a, b, g, hits) for kind, a, b, g, hits in rows if kind == "notice"]
    in_sample = sum(row[3] for row in notice_rows)
    scale = (total / in_sample) if sampled and in_sample else 1.0
    facets = Facets(total=total, approximate=sampled)
    by_source: dict[str, int] = {}
    by_year: dict[str, int] = {}
    for source, year_value, has_gtin, hits in notice_rows:
        by_source[source] = by_source.get(source, 0) + hits
        key = str(year_value or "")
        by_year[key] = by_year.get(key, 0) + hits
        facets.gtin["yes" if has_gtin else "no"] += hits
    by_axis: dict[str, dict[str, int]] = {axis: {} for axis in AXIS_FACETS.values()}
    for kind, axis, value, _, hits in rows:
        if kind == "finding":
            by_axis[axis][value] = hits
    if scale != 1.0:
        by_source = {k: round(v * scale) for k, v in by_source.items()}
        by_year = {k: round(v * scale) for k, v in by_year.items()}
        facets.gtin = {k: round(v * scale) for k, v in facets.gtin.items()}
        by_axis = {axis: {k: round(v * scale) for k, v in counts.items()} for axis, counts in by_axis.items()}
    keep = keep or {}
    facets.values["source"] = _top(by_source, values_per_facet, keep.get("source", []))
    for name, axis in AXIS_FACETS.items():
        facets.values[name] = _top(by_axis[axis], values_per_facet, keep.get(name, []))
    facets.years = [FacetValue(y, c) for y, c in sorted(by_year.items(), key=lambda kv: kv[0] or "0000", reverse=True)]
    facets.seconds = time.perf_counter() - started
    return facets


def _interrupted(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "interrupted" in message or "statement timeout" in message or "canceling statement" in message


def _top(counts: dict[str, int], n: int, keep: list[str]) -> list[FacetValue]:
    top = [FacetValue(v, c) for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
    shown = {f.value for f in top}
    return top + [FacetValue(v, counts.get(v, 0)) for v in keep if v not in shown]
