"""Listing impact of proposed rules: how many catalogue listings they hit, which are new, and where.

The estimate is exact when the catalogue has at most ``budget`` listings: every listing is matched, in
one pass. Beyond the budget it is a stratified random sample:

- strata are market × top-level category (``cat.toys`` for ``cat.toys.magnetic``; the first segment of a
  catalogue's own label such as ``Toys >> Dolls``); strata too small to get two sampled listings are
  pooled into a per-market, then a global "(other)" stratum;
- a first pass counts the listings per stratum (it is the same pass that tries to be exact, abandoned
  once the count passes the budget), and a second pass draws a simple random sample without replacement
  of n_h listings from stratum h, n_h proportional to its size (at least two), seeded so that the same
  seed gives the same sample;
- the totals are the stratified estimator N·p̂ with p̂ = Σ W_h·p_h (W_h = N_h/N);
- the 95 % confidence interval is the **Wilson score interval on p̂ with Kish's effective sample size**
  n_eff = p̂(1−p̂)/V̂(p̂), where V̂(p̂) = Σ W_h²·(1−n_h/N_h)·p_h(1−p_h)/(n_h−1) is the usual stratified
  variance with finite-population correction (n_eff falls back to the sample size when V̂ is 0, e.g. no hit
  in the sample). Unlike the plain normal interval it does not collapse to [0, 0] for rare rules. The
  bounds are clamped to what the sample proves (at least the hits seen, at most N minus the misses seen).

The split by market, category, rule and seller is estimated the same way (weights N_h/n_h) but given
without intervals; ``method`` says which kind of figure the reader is looking at.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import random
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from radar.catalogue import Catalogue, Listing, ListingChunk, open_catalogue
from radar.matcher import Matcher, Span, highlight
from radar.rules import Rule

log = logging.getLogger(__name__)

Z95 = 1.959963984540054
OTHER = "(other)"
NONE = "(none)"
ALL = "(all)"
TOP_SELLERS = 10


@dataclass
class Tally:
    """Listings hit, and how many of those no current rule hits."""

    hits: int = 0
    newly_hit: int = 0


@dataclass
class Example:
    """One listing a proposed rule hits, with the phrases marked for a reviewer."""

    listing_id: str
    title: str
    market: str
    category: str | None
    brand: str | None
    seller: str | None
    rule_ids: tuple[str, ...]
    terms: tuple[str, ...]
    spans: tuple[Span, ...]
    highlighted: str
    newly_hit: bool


@dataclass
class ImpactEstimate:
    """What proposed rules would do to a catalogue (see the module docstring for how it is estimated)."""

    listings_total: int
    listings_scanned: int
    hits: int
    already_hit: int
    newly_hit: int
    hits_ci: tuple[int, int]
    newly_hit_ci: tuple[int, int]
    by_market: dict[str, Tally]
    by_category: dict[str, Tally]
    by_rule: dict[str, Tally]
    top_sellers: list[tuple[str, int]]
    examples: list[Example]
    exact: bool
    method: str
    strata: int = 1
    seed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: tallies as dicts, spans as lists."""
        return asdict(self)


# --- strata --------------------------------------------------------------------------------------------

_LABEL_SPLIT = re.compile(r"\s*(?:>>|>|/|\|)\s*")


def top_category(category: str | None) -> str:
    """The stratum part of a category: ``cat.toys`` for ``cat.toys.magnetic``, ``Toys`` for ``["Toys >> Dolls"]``."""
    if not category:
        return NONE
    if category.startswith("cat."):
        return ".".join(category.split(".")[:2])
    head = _LABEL_SPLIT.split(category.strip(" [\"'"), maxsplit=1)[0].strip(" [\"'")
    return head or NONE


class _TopCategories(dict):
    def __missing__(self, key: str | None) -> str:
        value = self[key] = top_category(key)
        return value


def _allocate(sizes: dict[Any, int], budget: int) -> dict[Any, int]:
    """Proportional allocation by largest remainder, at least min(N_h, 2) each, never more than N_h."""
    total = sum(sizes.values())
    quotas = {k: budget * n / total for k, n in sizes.items()}
    alloc = {k: min(sizes[k], max(min(sizes[k], 2), int(q))) for k, q in quotas.items()}
    spare = budget - sum(alloc.values())
    if spare > 0:
        order = sorted(sizes, key=lambda k: (quotas[k] - int(quotas[k])), reverse=True)
        while spare > 0:
            progressed = False
            for k in order:
                if spare and alloc[k] < sizes[k]:
                    alloc[k] += 1
                    spare -= 1
                    progressed = True
            if not progressed:
                break
    elif spare < 0:
        # The minimum of two per stratum overshot: take back from the largest allocations.
        for k in sorted(alloc, key=alloc.get, reverse=True):
            while spare < 0 and alloc[k] > 2:
                alloc[k] -= 1
                spare += 1
    return alloc


def _design(counts: Counter, budget: int) -> tuple[dict[tuple[str, str], int], list[tuple[str, str]], list[int], list[int]]:
    """Pool small strata and allocate the budget: raw key → stratum index, stratum keys, N_h, n_h."""
    total = sum(counts.values())
    keys = {k: k for k in counts}

    def pooled_sizes() -> Counter:
        sizes: Counter = Counter()
        for raw, final in keys.items():
            sizes[final] += counts[raw]
        return sizes

    for pool in (lambda k: (k[0], OTHER), lambda k: (ALL, OTHER)):
        sizes = pooled_sizes()
        small = {k for k, n in sizes.items() if n * budget / total < 2 and k != (ALL, OTHER)}
        if not small:
            break
        keys = {raw: (pool(final) if final in small else final) for raw, final in keys.items()}
    sizes = pooled_sizes()
    stratum_keys = sorted(sizes)
    alloc = _allocate(dict(sizes), budget)
    index = {k: i for i, k in enumerate(stratum_keys)}
    mapping = {raw: index[final] for raw, final in keys.items()}
    return mapping, stratum_keys, [sizes[k] for k in stratum_keys], [alloc[k] for k in stratum_keys]


def wilson_interval(p: float, n_eff: float, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for proportion ``p`` with ``n_eff`` observations, scaled to ``total``."""
    if n_eff <= 0:
        return 0.0, float(total)
    z2 = z * z
    denominator = 1 + z2 / n_eff
    centre = (p + z2 / (2 * n_eff)) / denominator
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n_eff + z2 / (4 * n_eff * n_eff)) / denominator
    return total * max(0.0, centre - half), total * min(1.0, centre + half)


def _stratified(N_h: Sequence[int], n_h: Sequence[int], y_h: Sequence[int]) -> tuple[int, tuple[int, int]]:
    """Point estimate and 95 % interval of a population count from per-stratum sample counts."""
    total = sum(N_h)
    if total == 0:
        return 0, (0, 0)
    p = 0.0
    variance = 0.0
    for N, n, y in zip(N_h, n_h, y_h):
        if n == 0:
            continue
        weight = N / total
        ph = y / n
        p += weight * ph
        if n > 1 and n < N:
            variance += weight * weight * (1 - n / N) * ph * (1 - ph) / (n - 1)
    sampled = sum(n_h)
    n_eff = p * (1 - p) / variance if variance > 0 and 0 < p < 1 else sampled
    low, high = wilson_interval(p, n_eff, total)
    seen_hits = sum(y_h)
    seen_misses = sampled - seen_hits
    low_i = max(seen_hits, math.floor(low))
    high_i = min(total - seen_misses, math.ceil(high))
    estimate = min(max(round(total * p), low_i), high_i)
    return estimate, (low_i, high_i)


# --- the estimate -----------------------------------------------------------------------------------


class _Accumulator:
    """Weighted tallies of hit listings, and reservoirs of examples."""

    def __init__(self, proposed: int, rules: Sequence[Rule], examples: int, seed: int, n_strata: int = 1) -> None:
        self.proposed = proposed
        self.rules = rules
        self.by_market: dict[str, list[float]] = {}
        self.by_category: dict[str, list[float]] = {}
        self.by_rule: dict[str, list[float]] = {r.id: [0.0, 0.0] for r in rules[:proposed]}
        self.sellers: Counter = Counter()
        self.hits = 0.0
        self.already = 0.0
        self.newly = 0.0
        self.y_h = [0] * n_strata
        self.z_h = [0] * n_strata
        self.examples = examples
        self.rng = random.Random(seed)
        self.seen_new = 0
        self.seen_old = 0
        self.reservoir_new: list[tuple[Listing, tuple[int, ...], bool]] = []
        self.reservoir_old: list[tuple[Listing, tuple[int, ...], bool]] = []

    def add(self, chunk: ListingChunk, row: int, proposed: tuple[int, ...], newly: bool, weight: float = 1.0, stratum: int = 0) -> None:
        """Count listing ``row`` of ``chunk``, hit by the proposed rules ``proposed``; ``newly``: no current rule hits it."""
        self.hits += weight
        self.y_h[stratum] += 1
        if newly:
            self.newly += weight
            self.z_h[stratum] += 1
        else:
            self.already += weight
        for key, table in ((chunk.market[row], self.by_market), (chunk.category[row] if chunk.category else None, self.by_category)):
            slot = table.setdefault(key or NONE, [0.0, 0.0])
            slot[0] += weight
            if newly:
                slot[1] += weight
        for i in proposed:
            slot = self.by_rule[self.rules[i].id]
            slot[0] += weight
            if newly:
                slot[1] += weight
        if chunk.seller is not None and chunk.seller[row]:
            self.sellers[chunk.seller[row]] += weight
        self._keep_example(chunk, row, proposed, newly)

    def _keep_example(self, chunk: ListingChunk, row: int, proposed: tuple[int, ...], newly: bool) -> None:
        if not self.examples:
            return
        if newly:
            self.seen_new += 1
            reservoir, seen = self.reservoir_new, self.seen_new
        else:
            self.seen_old += 1
            reservoir, seen = self.reservoir_old, self.seen_old
        # Reservoir sampling: every hit listing has the same chance to be shown, whatever its position.
        if len(reservoir) < self.examples:
            reservoir.append((chunk.listing(row), proposed, newly))
        else:
            slot = self.rng.randrange(seen)
            if slot < self.examples:
                reservoir[slot] = (chunk.listing(row), proposed, newly)

    def tallies(self, table: Mapping[str, list[float]]) -> dict[str, Tally]:
        ordered = sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return {k: Tally(round(v[0]), round(v[1])) for k, v in ordered}

    def build_examples(self, matcher: Matcher) -> list[Example]:
        # Newly hit listings first: they are what the reviewer is deciding about.
        chosen = (self.reservoir_new + self.reservoir_old)[: self.examples]
        out = []
        for listing, proposed, newly in chosen:
            hits = {i: hit for i, hit in matcher.match_listing_indexed(listing) if i in proposed}
            spans = tuple(s for hit in hits.values() for s in hit.spans)
            title_spans = [s for s in spans if s.field == "title"]
            out.append(
                Example(
                    listing_id=listing.id,
                    title=listing.title,
                    market=listing.market,
                    category=listing.category,
                    brand=listing.brand,
                    seller=listing.seller,
                    rule_ids=tuple(matcher.rules[i].id for i in proposed),
                    terms=tuple(dict.fromkeys(t for hit in hits.values() for t in hit.terms)),
                    spans=spans,
                    highlighted=highlight(listing.title, title_spans),
                    newly_hit=newly,
                )
            )
        return out


def _proposed_hits(pairs: tuple[np.ndarray, np.ndarray], proposed: int) -> Iterable[tuple[int, tuple[int, ...], bool]]:
    """(row, proposed rule indices, newly hit) for each row a proposed rule hits, from a chunk's (row, rule) pairs.

    Rules ``0 … proposed-1`` of the matcher are the proposed ones, the rest the current policy; only
    rows hit by a proposed rule reach Python.
    """
    rows, rules = pairs
    is_proposed = rules < proposed
    if not is_proposed.any():
        return ()
    current_rows = np.unique(rows[~is_proposed])
    hit_rows, starts = np.unique(rows[is_proposed], return_index=True)
    newly = ~np.isin(hit_rows, current_rows)
    groups = np.split(rules[is_proposed], starts[1:])
    return zip(hit_rows.tolist(), [tuple(g.tolist()) for g in groups], newly.tolist())


# --- matching, in this process or in worker processes ------------------------------------------------

_worker_matcher: Matcher | None = None


def _start_worker(matcher: Matcher) -> None:
    global _worker_matcher
    _worker_matcher = matcher


def _scan_columns(columns: tuple[list, list, list | None, list | None]) -> tuple[np.ndarray, np.ndarray]:
    return _worker_matcher.scan_pairs(*columns)  # type: ignore[union-attr]  # set by _start_worker


def _columns(chunk: ListingChunk) -> tuple[list, list, list | None, list | None]:
    return chunk.title, chunk.market, chunk.category, chunk.description


class _Scanner:
    """``matcher.scan_pairs`` over a stream of chunks, here (``workers`` 1) or in a pool of worker processes.

    Results come back in the order of the chunks, so the estimate is the same whatever the worker count.
    Each worker gets the matcher once, when it starts (forked: inherited as it is; spawned: pickled as its
    rules and rebuilt); chunks travel as plain column lists, at most two per worker in flight, so memory
    stays bounded however large the catalogue.
    """

    def __init__(self, matcher: Matcher, workers: int) -> None:
        self.matcher = matcher
        self.workers = max(1, workers)
        self.pool: Any = None

    def __enter__(self) -> _Scanner:
        if self.workers > 1:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            self.pool = context.Pool(self.workers, initializer=_start_worker, initargs=(self.matcher,))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __call__(self, items: Iterable[tuple[ListingChunk, Any]]) -> Iterator[tuple[ListingChunk, Any, tuple[np.ndarray, np.ndarray]]]:
        """(chunk, context, (rows, rule indices)) for each (chunk, context) of ``items``, in order."""
        if self.pool is None:
            for chunk, context in items:
                yield chunk, context, self.matcher.scan_pairs(*_columns(chunk))
            return
        pending: deque = deque()
        for chunk, context in items:
            pending.append((chunk, context, self.pool.apply_async(_scan_columns, (_columns(chunk),))))
            if len(pending) > 2 * self.workers:
                chunk, context, result = pending.popleft()
                yield chunk, context, result.get()
        while pending:
            chunk, context, result = pending.popleft()
            yield chunk, context, result.get()


def impact_workers() -> int:
    """The ``impact_workers`` setting: processes that match listings (0: one per CPU)."""
    from radar.settings import get_settings

    workers = int(get_settings().impact_workers)
    return workers if workers > 0 else (os.cpu_count() or 1)


def _strata_keys(chunk: ListingChunk, top: _TopCategories) -> Iterator[tuple[str, str]]:
    """(market, top-level category) of each row of ``chunk``, the stratum before pooling."""
    if chunk.category is None:
        return zip(chunk.market, repeat(NONE))
    return zip(chunk.market, map(top.__getitem__, chunk.category))


def _subchunk(chunk: ListingChunk, rows: Sequence[int]) -> ListingChunk:
    def pick(column: list | None) -> list | None:
        return None if column is None else [column[i] for i in rows]

    return ListingChunk(
        id=pick(chunk.id), title=pick(chunk.title), market=pick(chunk.market), description=pick(chunk.description),
        category=pick(chunk.category), brand=pick(chunk.brand), seller=pick(chunk.seller),
    )  # type: ignore[arg-type]


def estimate_impact(
    proposed_rules: Sequence[Rule] | Rule,
    current_rules: Iterable[Rule],
    catalogue: Catalogue | str | Any,
    budget: int = 2_000_000,
    examples: int = 20,
    seed: int = 0,
    *,
    fields: Sequence[str] = ("title", "description"),
    workers: int | None = None,
) -> ImpactEstimate:
    """How many listings of ``catalogue`` the proposed rules hit, and how many of those are new.

    ``current_rules`` is the policy in force (a proposed edit of rule X is compared with the current X).
    ``catalogue`` is a :class:`~radar.catalogue.Catalogue`, a path or URL for ``open_catalogue``, or a
    list of listings. ``budget`` caps the listings matched; a larger catalogue is sampled (module
    docstring). ``fields`` says which listing text the phrases are matched against. ``workers`` processes
    match the listings (default: the ``impact_workers`` setting); the result does not depend on it.
    """
    if isinstance(proposed_rules, Rule):
        proposed_rules = [proposed_rules]
    proposed = list(proposed_rules)
    if not proposed:
        raise ValueError("estimate_impact needs at least one proposed rule")
    if budget < 1:
        raise ValueError("budget must be at least 1 listing")
    rules = proposed + list(current_rules)
    matcher = Matcher(rules)
    catalogue = open_catalogue(catalogue)
    optional = ["category", "seller", "brand"] + (["description"] if "description" in fields else [])
    top = _TopCategories()

    # Pass 1: match everything while the catalogue fits the budget; count the strata unless the catalogue
    # says (cheaply: records, Parquet metadata, SQL) that it fits.
    known = catalogue.count()
    counting = known is None or known > budget
    counts: Counter = Counter()
    exact = _Accumulator(len(proposed), rules, examples, seed)
    total = 0
    within_budget = True

    def first_pass() -> Iterator[tuple[ListingChunk, None]]:
        nonlocal total, within_budget
        for chunk in catalogue.chunks(optional):
            if counting:
                counts.update(_strata_keys(chunk, top))
            total += len(chunk)
            if within_budget and total > budget:
                within_budget = False
                log.info("%s: more than %d listings, switching to a stratified sample", catalogue.name, budget)
            if within_budget:
                yield chunk, None

    workers = impact_workers() if workers is None else max(1, workers)
    with _Scanner(matcher, workers) as scanner:
        for chunk, _, pairs in scanner(first_pass()):
            for row, hit_by, newly in _proposed_hits(pairs, len(proposed)):
                exact.add(chunk, row, hit_by, newly)
    skipped = {"empty_titles": catalogue.stats.empty_titles, "missing_market": catalogue.stats.missing_market,
               "bad_records": catalogue.stats.bad_records}

    if within_budget:
        acc = exact
        return ImpactEstimate(
            listings_total=total,
            listings_scanned=total,
            hits=round(acc.hits),
            already_hit=round(acc.already),
            newly_hit=round(acc.newly),
            hits_ci=(round(acc.hits), round(acc.hits)),
            newly_hit_ci=(round(acc.newly), round(acc.newly)),
            by_market=acc.tallies(acc.by_market),
            by_category=acc.tallies(acc.by_category),
            by_rule=acc.tallies(acc.by_rule),
            top_sellers=[(s, round(n)) for s, n in acc.sellers.most_common(TOP_SELLERS)],
            examples=acc.build_examples(matcher),
            exact=True,
            method=f"exact: all {total:,} listings matched",
            strata=1,
            seed=seed,
            skipped=skipped,
        )

    if not counting:
        # The catalogue grew past the budget after it was counted: count the strata in a pass of their own.
        log.warning("%s: counted %d rows but read %d listings; the catalogue changed while being read", catalogue.name, known, total)
        for chunk in catalogue.chunks(["category"]):
            counts.update(_strata_keys(chunk, top))
        total = sum(counts.values())

    # Pass 2: a stratified simple random sample, drawn as sorted within-stratum positions.
    mapping, stratum_keys, N_h, n_h = _design(counts, budget)
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(N, size=n, replace=False)) if n < N else np.arange(N) for N, n in zip(N_h, n_h)]
    weights = [N / n if n else 0.0 for N, n in zip(N_h, n_h)]
    seen = np.zeros(len(stratum_keys), dtype=np.int64)
    acc = _Accumulator(len(proposed), rules, examples, seed, len(stratum_keys))

    def second_pass() -> Iterator[tuple[ListingChunk, list[int]]]:
        for chunk in catalogue.chunks(optional):
            codes = np.fromiter(map(mapping.__getitem__, _strata_keys(chunk, top)), dtype=np.int64, count=len(chunk))
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(stratum_keys) + 1))
            picked: list[np.ndarray] = []
            for h in np.flatnonzero(np.diff(bounds)):
                rows_h = order[bounds[h] : bounds[h + 1]]
                positions = seen[h] + np.arange(rows_h.size)
                seen[h] += rows_h.size
                sel = chosen[h]
                j = np.searchsorted(sel, positions)
                inside = j < sel.size
                member = np.zeros(rows_h.size, dtype=bool)
                member[inside] = sel[j[inside]] == positions[inside]
                picked.append(rows_h[member])
            rows = np.sort(np.concatenate(picked)).tolist() if picked else []
            if rows:
                yield _subchunk(chunk, rows), codes[rows].tolist()

    scanned = 0
    with _Scanner(matcher, workers) as scanner:
        for sub, sub_codes, pairs in scanner(second_pass()):
            scanned += len(sub)
            for row, hit_by, newly in _proposed_hits(pairs, len(proposed)):
                h = sub_codes[row]
                acc.add(sub, row, hit_by, newly, weights[h], h)
    if scanned != sum(n_h):
        # The catalogue changed between the two passes; the design no longer describes the sample.
        log.warning("%s: expected %d sampled listings, read %d; the catalogue changed while being read", catalogue.name, sum(n_h), scanned)

    hits, hits_ci = _stratified(N_h, n_h, acc.y_h)
    newly, newly_ci = _stratified(N_h, n_h, acc.z_h)
    return ImpactEstimate(
        listings_total=total,
        listings_scanned=scanned,
        hits=hits,
        already_hit=max(0, hits - newly),
        newly_hit=newly,
        hits_ci=hits_ci,
        newly_hit_ci=newly_ci,
        by_market=acc.tallies(acc.by_market),
        by_category=acc.tallies(acc.by_category),
        by_rule=acc.tallies(acc.by_rule),
        top_sellers=[(s, round(n)) for s, n in acc.sellers.most_common(TOP_SELLERS)],
        examples=acc.build_examples(matcher),
        exact=False,
        method=(
            f"stratified sample of {scanned:,} of {total:,} listings ({len(stratum_keys)} strata: market × top-level "
            "category, proportional allocation); 95% CI: Wilson score interval on the stratified proportion with "
            "Kish effective sample size; splits by market, category, rule and seller are weighted estimates"
        ),
        strata=len(stratum_keys),
        seed=seed,
        skipped=skipped,
    )
