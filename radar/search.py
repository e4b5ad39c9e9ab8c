"""Full-text search over every stored notice, one interface over SQLite FTS5 and PostgreSQL tsvector.

A query is words, "quoted phrases" and -excluded words. Every word matches as a prefix (charger finds
chargers), all of them must match, and nothing the user types is passed to the database as syntax:
words are reduced to letters and digits and sent as bound parameters, so FTS operators, quotes and SQL
fragments in a query are just more words.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from radar.errors import SearchQueryError
from radar.models import SIDE_ROLES, counted_role_sql

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
    approximate: bool = False  # total estimated from a sample of the archive (see search's estimate_above)
    # The id of every match, when the search read them all to count them (at most MATCH_IDS_KEPT):
    # radar.web.facets.facet_counts counts from these instead of running the search again.
    match_ids: list[int] | None = field(default=None, repr=False)


MATCH_IDS_KEPT = 50_000


@dataclass
class Filters:
    jurisdictions: list[str] = field(default_factory=list)  # taxonomy ids; descendants included
    categories: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)  # policy class ids; descendants included
    sources: list[str] = field(default_factory=list)
    since: date | None = None
    until: date | None = None
    has_gtin: bool | None = None  # True: only notices with a GTIN; False: only without


# Filter axis → classification axis, in the order a tie on specificity is broken: markets last, as
# they are few and broad.
_AXES = (("categories", "category"), ("hazards", "hazard"), ("policies", "policy"), ("jurisdictions", "jurisdiction"))
FILTER_AXES = tuple(axis for _, axis in _AXES)


# -- facet keys: the taxonomy filters inside the full-text index --------------------------------------
#
# A search with words and a taxonomy filter ("charger" in Germany) intersects two lists: the notices the
# words match and the notices with the finding. Built from the classification table, one of the two is a
# list of tens of thousands of ids or a probe per notice. So each notice also carries its counted
# findings as tokens (notice.facet_keys), indexed with its text on SQLite (the facet_keys column of
# notice_fts) and in their own tsvector on PostgreSQL (notice.facet_vector, migration 0005): the full-
# text index then intersects the words with the filters itself, as it intersects two words.


def facet_token(axis: str, value: str) -> str:
    """The index token of one finding: letters and digits only (FTS5's tokenizer keeps it whole), one
    to one with (axis, value), and never a word of a query (see where_clause's column filter)."""
    return "f" + f"{axis}:{value}".encode().hex()


def facet_token_value(token: str) -> tuple[str, str] | None:
    """The (axis, value) of a facet token; None for anything that is not one."""
    if not token.startswith("f"):
        return None
    try:
        axis, _, value = bytes.fromhex(token[1:]).decode().partition(":")
    except ValueError:
        return None
    return (axis, value) if value else None


def facet_keys(findings) -> str:
    """A notice's facet_keys from its findings, (axis, value, role) triples: a token for each counted
    finding on a filter axis and for each of its ancestors (cat.toys.magnetic also files the notice under
    cat.toys and cat), so a filter on an id matches the id and everything below it."""
    tokens = set()
    for axis, value, role in findings:
        if axis not in FILTER_AXES or role in SIDE_ROLES or not value:
            continue
        parts = value.split(".")
        tokens.update(facet_token(axis, ".".join(parts[:i])) for i in range(1, len(parts) + 1))
    return " ".join(sorted(tokens))


def refresh_facet_keys(connection, notice_ids) -> None:
    """Recompute notice.facet_keys of `notice_ids` from their classification rows; whatever writes
    findings calls this in the same transaction."""
    ids = sorted(set(notice_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found: dict[int, list] = {nid: [] for nid in chunk}
        rows = text("SELECT notice_id, axis, value, role FROM classification WHERE notice_id IN :ids")
        for notice_id, axis, value, role in connection.execute(rows.bindparams(bindparam("ids", expanding=True)),
                                                               {"ids": chunk}):
            found[notice_id].append((axis, value, role))
        connection.execute(text("UPDATE notice SET facet_keys = :keys WHERE id = :id AND facet_keys <> :keys"),
                           [{"id": nid, "keys": facet_keys(rows)} for nid, rows in found.items()])


def _keys_expression(filters: list[tuple[str, list[str]]], or_op: str, and_op: str) -> str:
    """The taxonomy filters as a match of facet tokens (each filter a clause of its values), FTS5's or
    tsquery's by the operators; exact tokens, as an ancestor's token is indexed in its own right."""
    clauses = [[[facet_token(axis, v)] for v in values] for axis, values in filters]
    return f" {and_op} ".join(_join(clauses, lambda tokens: tokens[0], or_op, and_op))


def _axis_clause(axis: str, values: list[str], params: dict[str, Any], form: str, dialect: str,
                 sample: "IdSample | None" = None) -> str:
    """One taxonomy filter: the notice has a finding on `axis` equal to one of `values` or below it.

    "Below it" is the range [id, id + "/"): taxonomy ids are letters, digits, "_" and ".", and "/" is
    the character right after ".", so the range holds the id and every id starting with it plus a dot,
    and an index on (axis, value) answers it with one seek. On PostgreSQL the column has the "C"
    collation (migration 0004), so the range means bytes there too, whatever the database's collation.
    """
    # A country a product only comes from is not a market it was flagged in, nor is an inferred hazard one
    # the notice names (SIDE_ROLES).
    role = f" AND {counted_role_sql('c')}"
    ors = []
    for i, value in enumerate(values):
        key = f"f_{axis}_{i}"
        params[key], params[f"{key}_end"] = value, value + "/"
        ors.append(f"(c.value >= :{key} AND c.value < :{key}_end)")
    condition = f"c.axis = '{axis}'{role} AND ({' OR '.join(ors)})"
    if form == "in":
        if sample is not None:  # only the sampled ids of the list: the sample costs what it holds
            params.update(s_low=sample.low, s_period=sample.period, s_size=sample.size)
            condition += " AND ((c.notice_id - :s_low) % :s_period) < :s_size"
        return f"n.id IN (SELECT c.notice_id FROM classification c WHERE {condition})"
    # OFFSET 0 keeps PostgreSQL from turning the probe into a join that hashes every finding of the axis
    # (it misjudges how many a range of ids holds, and the probe is what was asked for).
    fence = " OFFSET 0" if dialect == "postgresql" else ""
    return f"EXISTS (SELECT 1 FROM classification c WHERE c.notice_id = n.id AND {condition}{fence})"


def where_clause(engine: Engine, query: str, filters: Filters, *, form: str = "exists",
                 list_sample: "IdSample | None" = None) -> tuple[str, list[str], dict[str, Any], ParsedQuery]:
    """(joins, conditions, parameters, parsed query) selecting the notices `n` a search matches.

    With words, the taxonomy filters are matched in the full-text index with them (facet keys, above).
    Without, they are read from the classification table: form "exists" checks each with a correlated
    EXISTS per notice, best for finding one page (the scan walks the date index and stops after a page);
    "in" builds the narrowest filter's id list from the (axis, value, notice_id) index, best for
    counting. On SQLite, "in" with words joins the FTS match to the notices (best for sorting few
    matches) and "walk" makes the FTS match an id list, with no join: the scan walks the date index and
    stops after a page, which beats sorting every match when the words match many notices.
    """
    parsed = parse_query(query)
    params: dict[str, Any] = {}
    where: list[str] = []
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise SearchQueryError(f"search is implemented for SQLite and PostgreSQL, not {dialect}")
    fts = dialect == "sqlite" and parsed.positive
    if form == "walk" and not fts:
        form = "exists"
    axis_filters = [(axis, getattr(filters, name)) for name, axis in _AXES if getattr(filters, name)]
    # One id list is enough to drive a count; building a second one for a broad filter (juris.eu: most
    # of the archive) costs more than probing it per notice. The narrowest guess drives: the most
    # specific id (most dots).
    axis_filters.sort(key=lambda item: -min(v.count(".") for v in item[1]))
    keys_in_index = bool(axis_filters) and (fts or (dialect == "postgresql" and not parsed.empty))
    for i, (axis, values) in enumerate([] if keys_in_index else axis_filters):
        first = i == 0 and form != "exists"
        where.append(_axis_clause(axis, values, params, "in" if first else "exists", dialect, list_sample if first else None))
    if filters.sources:
        for i, source in enumerate(filters.sources):
            params[f"f_source_{i}"] = source
        where.append(f"n.source IN ({', '.join(f':f_source_{i}' for i in range(len(filters.sources)))})")
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
        # The query's words are looked for in the title and text only, never among the facet keys.
        params["match"] = "{title text} : (" + fts5_expression(parsed) + ")"
        if keys_in_index:
            params["match"] += " AND facet_keys : (" + _keys_expression(axis_filters, "OR", "AND") + ")"
    if fts and form == "walk":
        # The unary + keeps SQLite from using the list as the way in (an FTS5 MATCH run per id): the date
        # index is walked once and each id checked against the list.
        where.append("+n.id IN (SELECT rowid FROM notice_fts WHERE notice_fts MATCH :match)")
    elif fts:
        joins = "JOIN notice_fts f ON f.rowid = n.id"
        where.append("notice_fts MATCH :match")
    elif dialect == "sqlite" and parsed.excluded:
        params["match"] = "{title text} : (" + " OR ".join(f'"{w}"*' for w in parsed.excluded) + ")"
        where.append("n.id NOT IN (SELECT rowid FROM notice_fts WHERE notice_fts MATCH :match)")
    elif dialect == "postgresql" and not parsed.empty:
        params["tsq"] = tsquery_expression(parsed)
        where.append("n.search_vector @@ to_tsquery('simple', :tsq)")
        if keys_in_index:
            params["keys"] = _keys_expression(axis_filters, "|", "&")
            where.append("n.facet_vector @@ CAST(:keys AS tsquery)")
    return joins, where, params, parsed


def where_sql(where: list[str]) -> str:
    return f"WHERE {' AND '.join(where)}" if where else ""


def _needs_notice_row(filters: Filters) -> bool:
    return bool(filters.sources or filters.since or filters.until or filters.has_gtin is not None)


# Walking the date index costs about a tenth of what fetching and sorting one match costs, per notice
# passed; walking pays when it stops sooner: (offset + limit) × archive / matches < 10 × matches.
_WALK_ADVANTAGE = 10


def search(engine: Engine, query: str = "", filters: Filters | None = None, *, sort: str = "date",
           limit: int = 20, offset: int = 0, snippet_words: int = 16, estimate_above: int | None = None) -> SearchResult:
    """Notices matching the query and filters, newest first (or by relevance), with highlighted snippets.

    A hit's score is the database's relevance (bm25 on SQLite, ts_rank on PostgreSQL) when sorting by
    relevance, and None when sorting by date. Snippets are made here, not by the database, so both
    databases show the same snippet for the same notice.

    With `estimate_above`, a total that a sample of the archive puts above that number is estimated from
    the sample (and the result marked approximate) instead of counted: counting hundreds of thousands
    of matches exactly costs more than the page itself. Without it totals are exact.
    """
    if sort not in ("date", "relevance"):
        raise SearchQueryError(f"sort must be 'date' or 'relevance', not {sort!r}")
    if limit < 1 or limit > 1000 or offset < 0:
        raise SearchQueryError("limit must be 1..1000 and offset not negative")
    filters = filters or Filters()
    dialect = engine.dialect.name
    parsed = parse_query(query)
    with engine.connect() as connection:
        total, approximate = None, False
        walk = False
        score = "NULL"
        if sort == "relevance" and dialect == "sqlite" and parsed.positive:
            score = "-bm25(notice_fts, 4.0, 1.0, 0.0)"
        elif sort == "relevance" and dialect == "postgresql" and not parsed.empty:
            score = "ts_rank(n.search_vector, to_tsquery('simple', :tsq))"
        # Sorting by relevance scores and sorts every match, so that statement counts them too.
        count_with_page = score != "NULL"
        if not parsed.empty and sort == "date":
            # With words, the match list could be paged two ways: fetch and sort every match, or walk the
            # notices in date order and check each against the list, stopping after a page. The count
            # decides: walking a date index past non-matches costs about a tenth of fetching and sorting
            # one match. A total estimated from a sample is enough to decide; one small enough to be
            # counted exactly is counted by the statement that sorts the matches (every match is read
            # either way), unless SQLite can count it in the FTS index alone.
            low, high = ids = id_range(connection)
            fts_count = dialect == "sqlite" and parsed.positive and not _needs_notice_row(filters)
            if estimate_above and not fts_count:
                estimate = _estimate(connection, engine, query, filters, estimate_above, ids)
                if estimate is not None and estimate > estimate_above:
                    total, approximate = _three_figures(estimate), True
                else:
                    count_with_page = True
            else:
                total, approximate = _count(connection, engine, query, filters, estimate_above, ids)
            if total is not None:
                walk = total * total * _WALK_ADVANTAGE > (offset + limit) * (high - low + 1)
        if dialect == "sqlite" and parsed.positive:
            form = "walk" if walk else "in"
        else:
            form = "exists"  # without words the date-ordered scan stops after one page
        joins, where, params, parsed = where_clause(engine, query, filters, form=form)
        params.update({"limit": limit, "offset": offset, "text_chars": SNIPPET_TEXT_CHARS})
        columns = "n.id, n.source, n.source_id, n.title, n.url, n.published, substr(n.text, 1, :text_chars) AS text"
        if count_with_page:
            # The matches' ids, dates and scores are kept once (MATERIALIZED), counted, and sorted; only
            # the page's notices are fetched whole.
            # The first row also carries every match's id (for the facet counts), unless there are too many.
            in_m = ("score DESC, " if score != "NULL" else "") + "published DESC NULLS LAST, id DESC"
            all_ids = "json_group_array(id)" if dialect == "sqlite" else "array_agg(id)"
            params["ids_kept"] = MATCH_IDS_KEPT
            sql = (f"WITH m AS MATERIALIZED (SELECT n.id AS id, n.published AS published, {score} AS score "
                   f"FROM notice n {joins} {where_sql(where)}), "
                   f"c AS (SELECT count(*) AS total FROM m), "
                   f"p AS (SELECT id, published, score, row_number() OVER (ORDER BY {in_m}) AS rn "
                   f"FROM m ORDER BY {in_m} LIMIT :limit OFFSET :offset) "
                   f"SELECT {columns}, p.score AS score, c.total AS total, "
                   f"CASE WHEN p.rn = :offset + 1 AND c.total <= :ids_kept THEN (SELECT {all_ids} FROM m) END AS match_ids "
                   f"FROM p JOIN notice n ON n.id = p.id CROSS JOIN c ORDER BY p.rn")
        else:
            order = "n.published DESC NULLS LAST, n.id DESC"
            if dialect == "postgresql" and total is not None and not walk:
                # Few matches: "+ 0" keeps PostgreSQL from walking the order index past every non-match (it
                # guesses matches are common); it fetches the matches from the GIN index and sorts them.
                order = "(n.published + 0) DESC NULLS LAST, n.id DESC"
            sql = (f"SELECT {columns}, NULL AS score FROM notice n {joins} {where_sql(where)} "
                   f"ORDER BY {order} LIMIT :limit OFFSET :offset")
        rows = connection.execute(text(sql), params).all()
        match_ids = None
        if count_with_page and rows:
            total = rows[0].total
            match_ids = rows[0].match_ids
            if isinstance(match_ids, str):  # SQLite's JSON array
                match_ids = json.loads(match_ids)
        elif total is None:
            if len(rows) < limit and (rows or offset == 0):
                total = offset + len(rows)  # the last page: everything before it and on it is the whole result
            else:
                total, approximate = _count(connection, engine, query, filters, estimate_above)
        hits = hits_from_rows(connection, rows, parsed, snippet_words)
    return SearchResult(query=query, total=total, hits=hits, offset=offset, limit=limit, approximate=approximate,
                        match_ids=match_ids)


# -- counting -------------------------------------------------------------------------------------

MAX_SAMPLE_BLOCKS = 200
MIN_SAMPLE_BLOCK = 256


@dataclass
class IdSample:
    """A systematic sample of the archive: `size` consecutive notice ids out of every `period`, from
    `low` to `high`. Consecutive rows sit together on disk, so a block costs few page reads."""

    low: int
    high: int
    period: int
    size: int

    @property
    def fraction(self) -> float:
        """The share of the id range [low, high] the blocks cover."""
        covered = sum(min(self.size, self.high - start + 1) for start in range(self.low, self.high + 1, self.period))
        return covered / (self.high - self.low + 1)

    def restrict(self, joins: str, where: list[str], params: dict[str, Any], dialect: str, *,
                 words: bool = False, per_match: bool = False, columns: tuple[str, ...] = ()) -> tuple[str, str, list[str]]:
        """(common table expression or "", FROM clause, conditions) of the notices `n` of a search, kept
        to the sample. With words on SQLite one arithmetic test per match, on the FTS row, as FTS5 walks
        its match list anyway; so too with `per_match` (words on PostgreSQL that match fewer notices than
        the sample holds: the GIN index lists them). Otherwise each block is a range seek on the notice
        id, driven from a small table of the blocks, so only sampled notices are read at all. `columns`
        are notice columns read besides those a search reads."""
        if joins or per_match:
            params.update(s_low=self.low, s_period=self.period, s_size=self.size)
            ident = "+f.rowid" if joins else "n.id"
            return "", f"notice n {joins}", where + [f"(({ident} - :s_low) % :s_period) < :s_size"]
        values = []
        for i, start in enumerate(range(self.low, self.high + 1, self.period)):
            params[f"s_lo_{i}"], params[f"s_hi_{i}"] = start, start + self.size - 1
            values.append(f"(:s_lo_{i}, :s_hi_{i})")
        cte = f"s(lo, hi) AS (VALUES {', '.join(values)})"
        if dialect == "postgresql":
            # LATERAL with OFFSET 0 holds PostgreSQL to one range seek per block: it cannot tell how few
            # notices the blocks hold, and would otherwise scan every notice against every block. Without
            # words the columns a search reads are all in ix_notice_sample (migration 0004), so a sampled
            # count reads that index alone (facet counts also read the notices' facet_keys).
            read = ", ".join(["n.id", "n.source", "n.published", "n.gtin", *(["n.search_vector", "n.facet_vector"] if words else []),
                              *(f"n.{c}" for c in columns)])
            return (cte, f"s CROSS JOIN LATERAL (SELECT {read} FROM notice n WHERE n.id BETWEEN s.lo AND s.hi OFFSET 0) n",
                    where)
        return cte, "s CROSS JOIN notice n", where + ["n.id BETWEEN s.lo AND s.hi"]


def id_range(connection) -> tuple[int, int]:
    """The lowest and highest notice id; (1, 0) for an empty archive (a span of none)."""
    # Two scalar subqueries: each database answers a lone min() or max() of the key from the index's ends.
    low, high = connection.execute(text("SELECT (SELECT min(id) FROM notice), (SELECT max(id) FROM notice)")).one()
    return (1, 0) if low is None else (low, high)


def id_sample(ids: tuple[int, int], fraction: float) -> IdSample | None:
    """About `fraction` of the notice ids `ids` (lowest, highest; see id_range) in at most MAX_SAMPLE_BLOCKS
    evenly spaced blocks; None for an empty archive."""
    low, high = ids
    span = high - low + 1
    if span < 1:
        return None
    fraction = min(max(fraction, 0.0), 1.0)
    size = max(MIN_SAMPLE_BLOCK, math.ceil(span * fraction / MAX_SAMPLE_BLOCKS))
    period = max(size, round(size / fraction)) if fraction else span
    return IdSample(low=low, high=high, period=period, size=size)


def sampled_where(engine: Engine, query: str, filters: Filters, sample: IdSample, matches: int | None = None,
                  columns: tuple[str, ...] = ()) -> tuple[str, str, list[str], dict[str, Any]]:
    """(common table expression or "", FROM clause, conditions, parameters) of the notices `n` a search
    matches, kept to `sample`. What drives the search is sampled, so the cost follows the sample's
    matches: with words the full-text match list (on PostgreSQL when `matches`, the search's total, is
    below the number of notices the sample spans); with only a taxonomy filter its id list; otherwise
    ranges of notice ids. `columns`: notice columns the caller reads besides a search's."""
    dialect = engine.dialect.name
    parsed = parse_query(query)
    if parsed.empty and any(getattr(filters, name) for name, _ in _AXES):
        joins, where, params, parsed = where_clause(engine, query, filters, form="in", list_sample=sample)
        return "", f"notice n {joins}", where, params
    joins, where, params, parsed = where_clause(engine, query, filters, form="exists")
    per_match = dialect == "postgresql" and not parsed.empty and matches is not None and \
        matches < sample.fraction * (sample.high - sample.low + 1)
    cte, from_sql, where = sample.restrict(joins, where, params, dialect, words=not parsed.empty, per_match=per_match,
                                           columns=columns)
    return cte, from_sql, where, params


def _estimate(connection, engine: Engine, query: str, filters: Filters, estimate_above: int,
              ids: tuple[int, int]) -> float | None:
    """How many notices the search matches, estimated from a sample of about `estimate_above` notices of
    the archive (`ids`, its id_range); None when the archive is too small for a sample to pay."""
    low, high = ids
    span = high - low + 1
    if span <= 2 * estimate_above:
        return None
    sample = id_sample(ids, estimate_above / span)
    cte, from_sql, where, params = sampled_where(engine, query, filters, sample)
    sql = f"{'WITH ' + cte if cte else ''} SELECT count(*) FROM {from_sql} {where_sql(where)}"
    return connection.execute(text(sql), params).scalar_one() / sample.fraction


def _count(connection, engine: Engine, query: str, filters: Filters, estimate_above: int | None = None,
           ids: tuple[int, int] | None = None) -> tuple[int, bool]:
    """(total, approximate). With `estimate_above`, a total that a sample of about that many notices
    puts above it is returned as that estimate (three significant figures), not counted exactly.
    `ids` is the archive's id_range, when the caller has read it already."""
    if estimate_above:
        estimate = _estimate(connection, engine, query, filters, estimate_above, ids or id_range(connection))
        if estimate is not None and estimate > estimate_above:
            return _three_figures(estimate), True
    joins, where, params, _ = where_clause(engine, query, filters, form="in")
    if joins and not _needs_notice_row(filters):
        # Every condition is on the FTS row: count there, without fetching a single notice row.
        return connection.execute(text(f"SELECT count(*) FROM notice_fts f {where_sql(where)}"), params).scalar_one(), False
    return connection.execute(text(f"SELECT count(*) FROM notice n {joins} {where_sql(where)}"), params).scalar_one(), False


def _three_figures(value: float) -> int:
    digits = max(len(str(int(value))) - 3, 0)
    return int(round(value, -digits))


def count_matching(engine: Engine, query: str = "", filters: Filters | None = None) -> int:
    """How many notices the search matches, counted exactly."""
    with engine.connect() as connection:
        return _count(connection, engine, query, filters or Filters())[0]


# -- snippets -------------------------------------------------------------------------------------

SNIPPET_TEXT_CHARS = 100_000  # a snippet is looked for in this much of a notice's text
_PLAIN_SNIPPET_CHARS = 240


def make_snippet(text_value: str | None, parsed: ParsedQuery, words: int = 16) -> str:
    """About `words` words of the text around the best cluster of matches, each match between MARK_START
    and MARK_END, with … where the text was cut; without query words, the start of the text.

    A match is what the database matched: a token starting with a query word, or the tokens of a phrase
    in a row. Tokens are runs of letters and digits, as FTS5's unicode61 and PostgreSQL's simple parser
    split them, compared in lower case.
    """
    value = (text_value or "").replace(MARK_START, "").replace(MARK_END, "")
    tokens = list(_WORD.finditer(value)) if parsed.positive else []
    lowered = [t.group().lower() for t in tokens]
    marked = [False] * len(tokens)
    for clause in parsed.clauses:
        for alt in clause:
            if len(alt) == 1:
                for i, token in enumerate(lowered):
                    if token.startswith(alt[0]):
                        marked[i] = True
                continue
            for i in range(len(lowered) - len(alt) + 1):
                if lowered[i:i + len(alt)] == alt:
                    marked[i:i + len(alt)] = [True] * len(alt)
    if not any(marked):
        cut = value[:_PLAIN_SNIPPET_CHARS]
        return " ".join(cut.split()) + ("…" if len(value) > _PLAIN_SNIPPET_CHARS else "")
    # The window of `words` tokens holding the most matches; the earliest such, with a little lead-in.
    words = max(words, 1)
    best_start, best, running = 0, -1, 0
    for i, flag in enumerate(marked):
        running += flag
        if i >= words:
            running -= marked[i - words]
        if i >= words - 1 or i == len(marked) - 1:
            if running > best:
                best, best_start = running, max(i - words + 1, 0)
    first_match = next(i for i in range(best_start, len(marked)) if marked[i])
    start = max(0, min(best_start, first_match - words // 4))
    end = min(len(tokens), start + words)
    out, position = [], tokens[start].start()
    for i in range(start, end):
        token = tokens[i]
        out.append(value[position:token.start()])
        out.append(f"{MARK_START}{token.group()}{MARK_END}" if marked[i] else token.group())
        position = token.end()
    snippet = " ".join("".join(out).split())
    return ("…" if start > 0 else "") + snippet + ("…" if end < len(tokens) else "")


def hits_from_rows(connection, rows, parsed: ParsedQuery, snippet_words: int = 16) -> list[SearchHit]:
    """Result rows (id, source, source_id, title, url, published, text, score) as hits with their findings."""
    hits = [
        SearchHit(id=r.id, source=r.source, source_id=r.source_id, title=r.title, url=r.url,
                  published=_as_date(r.published), snippet=make_snippet(r.text, parsed, snippet_words),
                  score=float(r.score) if r.score is not None else None)
        for r in rows
    ]
    _attach_findings(connection, hits)
    return hits


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _attach_findings(connection, hits: list[SearchHit]) -> None:
    if not hits:
        return
    by_id = {h.id: h for h in hits}
    params = {f"id_{i}": h.id for i, h in enumerate(hits)}
    rows = connection.execute(
        text(
            "SELECT DISTINCT notice_id, axis, value FROM classification WHERE notice_id IN ("
            + ", ".join(f":id_{i}" for i in range(len(hits)))
            + f") AND {counted_role_sql('classification')} ORDER BY notice_id, axis, value"
        ),
        params,
    ).all()
    for notice_id, axis, value in rows:
        target = {"jurisdiction": by_id[notice_id].jurisdictions, "category": by_id[notice_id].categories,
                  "hazard": by_id[notice_id].hazards}.get(axis)
        if target is not None:
            target.append(value)
