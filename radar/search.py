"""Full-text search over every stored notice, one interface over SQLite FTS5 and PostgreSQL tsvector.

A query is words, "quoted phrases" and -excluded words. Every word matches as a prefix (charger finds
chargers), all of them must match, and nothing the user types is passed to the database as syntax:
words are reduced to letters and digits and sent as bound parameters, so FTS operators, quotes and SQL
fragments in a query are just more words.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from radar.errors import SearchQueryError

MARK_START, MARK_END = "\x02", "\x03"  # snippet highlight markers; each front end renders them its own way
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')
MAX_TERMS = 32


@dataclass
class ParsedQuery:
    """All clauses must match; a clause is one or more alternatives (joined by OR); an alternative is a
    word (one token) or a phrase (several tokens in a row)."""

    clauses: list[list[list[str]]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.clauses or self.excluded)

    @property
    def positive(self) -> bool:
        return bool(self.clauses)


def parse_query(query: str) -> ParsedQuery:
    """Split a user's query into clauses and exclusions, keeping only letters and digits.

    Words and "phrases" are ANDed; an upper-case OR between two of them makes them alternatives;
    -word or -"phrase" excludes. Anything else (quotes left open, operators of other engines, SQL) is
    reduced to the words it contains.
    """
    parsed = ParsedQuery()
    join_next = False
    count = 0
    for neg_phrase, phrase, neg_word, word in _TOKEN.findall(query or ""):
        if word == "OR" and not neg_word:
            join_next = bool(parsed.clauses)
            continue
        negative = bool(neg_phrase or neg_word)
        tokens = [t.lower() for t in _WORD.findall(phrase if (phrase or neg_phrase) else word)]
        if not tokens:
            continue
        count += 1
        if negative:
            parsed.excluded.extend(tokens)
            join_next = False
            continue
        alternatives = [tokens] if (phrase or neg_phrase) else [[t] for t in tokens]
        if join_next:
            parsed.clauses[-1].append(alternatives[0])
            alternatives = alternatives[1:]
        parsed.clauses.extend([alt] for alt in alternatives)
        join_next = False
    if count > MAX_TERMS:
        raise SearchQueryError(f"query has more than {MAX_TERMS} words; search for fewer")
    return parsed


def _fts5_alt(tokens: list[str]) -> str:
    return f'"{tokens[0]}"*' if len(tokens) == 1 else '"' + " ".join(tokens) + '"'


def _ts_alt(tokens: list[str]) -> str:
    return f"'{tokens[0]}':*" if len(tokens) == 1 else "(" + " <-> ".join(f"'{t}'" for t in tokens) + ")"


def _join(clauses: list[list[list[str]]], alt, or_op: str, and_op: str) -> list[str]:
    parts = []
    for clause in clauses:
        alts = [alt(tokens) for tokens in clause]
        parts.append(alts[0] if len(alts) == 1 else "(" + f" {or_op} ".join(alts) + ")")
    return parts


def fts5_expression(parsed: ParsedQuery) -> str:
    """The FTS5 MATCH expression: quoted prefix words and phrases, with NOT for exclusions."""
    expression = " AND ".join(_join(parsed.clauses, _fts5_alt, "OR", "AND"))
    for word in parsed.excluded:
        expression += f' NOT "{word}"*'
    return expression


def tsquery_expression(parsed: ParsedQuery) -> str:
    """The PostgreSQL to_tsquery('simple', ...) text with the same meaning as fts5_expression."""
    parts = _join(parsed.clauses, _ts_alt, "|", "&") + [f"!'{w}':*" for w in parsed.excluded]
    return " & ".join(parts)


@dataclass
class SearchHit:
    id: int
    source: str
    source_id: str
    title: str
    url: str
    published: date | None
    snippet: str
    score: float | None = None
    jurisdictions: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["published"] = self.published.isoformat() if self.published else None
        out["snippet"] = self.snippet.replace(MARK_START, "[").replace(MARK_END, "]")
        return out


@dataclass
class SearchResult:
    query: str
    total: int
    hits: list[SearchHit]
    offset: int = 0
    limit: int = 20


@dataclass
class Filters:
    jurisdictions: list[str] = field(default_factory=list)  # taxonomy ids; descendants included
    categories: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    since: date | None = None
    until: date | None = None


def _filter_sql(filters: Filters, params: dict[str, Any]) -> list[str]:
    clauses = []
    for axis, values in (("jurisdiction", filters.jurisdictions), ("category", filters.categories), ("hazard", filters.hazards)):
        if not values:
            continue
        ors = []
        for i, value in enumerate(values):
            params[f"{axis}_{i}"] = value
            params[f"{axis}_{i}_like"] = value.replace("%", "").replace("_", r"\_") + ".%"
            ors.append(f"(c.value = :{axis}_{i} OR c.value LIKE :{axis}_{i}_like ESCAPE '\\')")
        # A country a product only comes from is not a market it was flagged in.
        role = " AND (c.role IS NULL OR c.role <> 'origin')" if axis == "jurisdiction" else ""
        clauses.append(
            f"EXISTS (SELECT 1 FROM classification c WHERE c.notice_id = n.id AND c.axis = '{axis}'{role} AND ({' OR '.join(ors)}))"
        )
    if filters.sources:
        names = []
        for i, source in enumerate(filters.sources):
            params[f"source_{i}"] = source
            names.append(f":source_{i}")
        clauses.append(f"n.source IN ({', '.join(names)})")
    if filters.since:
        params["since"] = filters.since
        clauses.append("n.published >= :since")
    if filters.until:
        params["until"] = filters.until
        clauses.append("n.published <= :until")
    return clauses


def search(engine: Engine, query: str = "", filters: Filters | None = None, *, sort: str = "date",
           limit: int = 20, offset: int = 0, snippet_words: int = 16) -> SearchResult:
    """Notices matching the query and filters, newest first (or by relevance), with highlighted snippets."""
    if sort not in ("date", "relevance"):
        raise SearchQueryError(f"sort must be 'date' or 'relevance', not {sort!r}")
    if limit < 1 or limit > 1000 or offset < 0:
        raise SearchQueryError("limit must be 1..1000 and offset not negative")
    filters = filters or Filters()
    parsed = parse_query(query)
    dialect = engine.dialect.name
    params: dict[str, Any] = {"mark_start": MARK_START, "mark_end": MARK_END, "limit": limit, "offset": offset}
    where = _filter_sql(filters, params)
    joins = ""
    score = "NULL"
    snippet = "substr(n.text, 1, 240)"
    if dialect == "sqlite":
        if parsed.positive:
            params["match"] = fts5_expression(parsed)
            joins = "JOIN notice_fts f ON f.rowid = n.id"
            where.append("notice_fts MATCH :match")
            score = "-bm25(notice_fts, 4.0, 1.0)"
            params["ellipsis"] = "…"
            params["snippet_words"] = snippet_words
            snippet = "snippet(notice_fts, 1, :mark_start, :mark_end, :ellipsis, :snippet_words)"
        elif parsed.excluded:
            params["match"] = " OR ".join(f'"{w}"*' for w in parsed.excluded)
            where.append("n.id NOT IN (SELECT rowid FROM notice_fts WHERE notice_fts MATCH :match)")
    elif dialect == "postgresql":
        if not parsed.empty:
            params["tsq"] = tsquery_expression(parsed)
            where.append("n.search_vector @@ to_tsquery('simple', :tsq)")
            score = "ts_rank(n.search_vector, to_tsquery('simple', :tsq))"
            if parsed.positive:
                params["headline_opts"] = (
                    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={snippet_words + 4}, "
                    f"MinWords={max(snippet_words // 2, 3)}, ShortWord=2, MaxFragments=1, FragmentDelimiter=…"
                )
                snippet = "ts_headline('simple', translate(n.text, '<>', '  '), to_tsquery('simple', :tsq), :headline_opts)"
    else:
        raise SearchQueryError(f"search is implemented for SQLite and PostgreSQL, not {dialect}")
    where_sql = f"WHERE {' AND '.join(where)}" if where else ""
    order = "n.published DESC NULLS LAST, n.id DESC" if sort == "date" else f"{score} DESC, n.published DESC NULLS LAST, n.id DESC"
    if sort == "relevance" and score == "NULL":
        order = "n.published DESC NULLS LAST, n.id DESC"
    sql = (
        f"SELECT n.id, n.source, n.source_id, n.title, n.url, n.published, {snippet} AS snippet, {score} AS score "
        f"FROM notice n {joins} {where_sql} ORDER BY {order} LIMIT :limit OFFSET :offset"
    )
    count_sql = f"SELECT count(*) FROM notice n {joins} {where_sql}"
    with engine.connect() as connection:
        total = connection.execute(text(count_sql), params).scalar_one()
        rows = connection.execute(text(sql), params).all()
        hits = hits_from_rows(connection, rows)
    return SearchResult(query=query, total=total, hits=hits, offset=offset, limit=limit)


def hits_from_rows(connection, rows) -> list[SearchHit]:
    """Result rows (id, source, source_id, title, url, published, snippet, score) as hits with their findings."""
    hits = [
        SearchHit(id=r.id, source=r.source, source_id=r.source_id, title=r.title, url=r.url,
                  published=_as_date(r.published), snippet=_clean_snippet(r.snippet),
                  score=float(r.score) if r.score is not None else None)
        for r in rows
    ]
    _attach_findings(connection, hits)
    return hits


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _clean_snippet(value: str | None) -> str:
    return " ".join((value or "").split())


def _attach_findings(connection, hits: list[SearchHit]) -> None:
    if not hits:
        return
    by_id = {h.id: h for h in hits}
    params = {f"id_{i}": h.id for i, h in enumerate(hits)}
    rows = connection.execute(
        text(
            "SELECT DISTINCT notice_id, axis, value FROM classification WHERE notice_id IN ("
            + ", ".join(f":id_{i}" for i in range(len(hits)))
            + ") AND (role IS NULL OR role <> 'origin') ORDER BY notice_id, axis, value"
        ),
        params,
    ).all()
    for notice_id, axis, value in rows:
        target = {"jurisdiction": by_id[notice_id].jurisdictions, "category": by_id[notice_id].categories,
                  "hazard": by_id[notice_id].hazards}.get(axis)
        if target is not None:
            target.append(value)
