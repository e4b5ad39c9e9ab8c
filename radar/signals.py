"""Signals: weekly spikes per category × hazard × jurisdiction, new legislation, and the dates that matter.

Every signal says why it fired, with its numbers, and which notices it rests on; its ``key`` is its
kind, scope and period, so computing a week again updates the same rows instead of adding new ones
(and withdraws that week's spikes that no longer pass).

**Spike test.** Counts are of *incidents*, not notices: a recall that five regulators published is one
incident (see :mod:`radar.incidents`) and counts once, in the week of its earliest notice. A notice
linked to no other is an incident of its own. An incident counts in every cell (category × hazard ×
jurisdiction) its notices were classified into; categories also count in their parent category
(``cat.toys.magnetic`` in ``cat.toys``); origin countries (not markets) and hazards inferred from the
category (not named by the notice) do not count. For the signal week, a cell with count *k* is compared with the *B* weeks before it (``signal_baseline_weeks``,
12) holding *n* incidents in total: the expected weekly rate is λ = (n + 1) / B — the one added so a cell
never seen before is not infinitely surprising — and the cell **spikes when P(X ≥ k) < 0.01 for X ~
Poisson(λ) and k ≥ 3** (``signal_spike_p``, ``signal_spike_min_count``). The one-sided Poisson tail
is summed exactly in log space. Because hundreds of cells are tested every week, 0.01 alone would let a
few cells "spike" by chance each week; so by default (``signal_spike_correction = "fdr"``) a cell must
also pass the **Benjamini–Hochberg** procedure over all the cells tested that week, which keeps the
expected share of chance spikes among those reported at 1 % (with 60 cells tested, 3 incidents in a
cell never seen before still fire: p = 9·10⁻⁵ against a cut-off of 1.7·10⁻⁴). Weeks before the first stored notice are not baseline weeks; with fewer
than four the spike test is not run, so a fresh database does not spike on everything. A parent category
whose spike rests on the same incidents as a child's is not reported twice.

**Legislation.** A notice from a source of kind ``legislation``, or one that carries an effective date or
a comment deadline, published (or amended) in the week: one signal per notice, with the category it
affects.

**Deadlines.** Effective dates, comment deadlines and ends of transition periods (a notice label whose
name says "transition") from the signal week's Monday to ``signal_deadline_horizon_days`` ahead, and the
effective dates of rules in the policy file: ``kind="deadline"`` with ``due`` set.

**Incidents.** An incident seen by two or more sources, with a notice in the week: one signal, fired
again when a further source joins.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import product
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from radar.errors import RadarError
from radar.models import SIDE_ROLES, Classification, Incident, IncidentMember, Notice, Signal

log = logging.getLogger(__name__)

MIN_BASELINE_WEEKS = 4
MIN_INCIDENT_SOURCES = 2
AXES = ("category", "hazard", "jurisdiction", "severity", "policy")
_WEEK = re.compile(r"^(\d{4})-W(\d{1,2})$")


# --- weeks ----------------------------------------------------------------------------------------------


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(week: str) -> date:
    """The Monday of an ISO week written like ``2026-W47``."""
    found = _WEEK.match(week.strip()) if isinstance(week, str) else None
    if not found:
        raise RadarError(f"week {week!r} is not an ISO week; write it like 2026-W47")
    try:
        return date.fromisocalendar(int(found.group(1)), int(found.group(2)), 1)
    except ValueError as exc:
        raise RadarError(f"week {week!r} does not exist ({exc})") from None


def last_complete_week(today: date | None = None) -> str:
    """The ISO week before the current one: what a Monday-morning review looks back on."""
    today = today or datetime.now(timezone.utc).date()
    return iso_week(today - timedelta(days=7))


# --- the test --------------------------------------------------------------------------------------------


def poisson_sf(k: int, mu: float) -> float:
    """P(X ≥ k) for X ~ Poisson(mu), summed term by term in log space (no cancellation for tiny tails)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    log_term = -mu + k * math.log(mu) - math.lgamma(k + 1)
    total = 0.0
    j = k
    while True:
        term = math.exp(log_term)
        total += term
        j += 1
        log_term += math.log(mu) - math.log(j)
        # Terms shrink geometrically once j > mu; stop when they no longer change the sum.
        if j > mu and (term < total * 1e-17 or term == 0.0):
            break
        if j > k + 100_000:
            break
    return min(1.0, total)


def bh_threshold(p_values: list[float], q: float) -> float:
    """The Benjamini–Hochberg cut-off: the largest p_(k) with p_(k) ≤ k/m·q (0 when none qualifies)."""
    ordered = sorted(p_values)
    m = len(ordered)
    cut = 0.0
    for k, p in enumerate(ordered, start=1):
        if p <= k / m * q:
            cut = p
    return cut


def spike_test(count: int, baseline_total: int, baseline_weeks: int, *, p_threshold: float, min_count: int) -> tuple[bool, float, float]:
    """(fires, p-value, expected rate λ) of the one-sided Poisson test stated in the module docstring."""
    mu = (baseline_total + 1) / max(1, baseline_weeks)
    p = poisson_sf(count, mu)
    return (count >= min_count and p < p_threshold), p, mu


# --- inputs -----------------------------------------------------------------------------------------------


def category_with_parents(category: str) -> list[str]:
    """``cat.toys.magnetic`` → ``["cat.toys.magnetic", "cat.toys"]`` (the bare prefix ``cat`` is not a category)."""
    parts = category.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 1, -1)]


def _notice_day(published, updated, first_seen) -> date | None:
    if published:
        return published
    if updated:
        return updated
    if first_seen:
        return first_seen.date() if isinstance(first_seen, datetime) else first_seen
    return None


def _load_classes(session: Session, notice_ids: Iterable[int]) -> dict[int, dict[str, list[tuple[str, float]]]]:
    """notice id → axis → [(value, score)], side roles left out (SIDE_ROLES: origin countries, inferred hazards)."""
    out: dict[int, dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
    ids = sorted(set(notice_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = session.execute(
            select(Classification.notice_id, Classification.axis, Classification.value, Classification.score,
                   Classification.role)
            .where(Classification.notice_id.in_(chunk), Classification.axis.in_(AXES))
        )
        for notice_id, axis, value, score, role in rows:
            if role in SIDE_ROLES:  # not a market, or not a hazard the notice names
                continue
            values = out[notice_id][axis]
            if all(v != value for v, _ in values):
                values.append((value, score or 0.0))
    return out


def best_category(classes: dict[str, list[tuple[str, float]]]) -> str | None:
    """The most specific, then best-scored category of a notice."""
    cats = classes.get("category") or []
    if not cats:
        return None
    return sorted(cats, key=lambda vs: (-vs[0].count("."), -vs[1], vs[0]))[0][0]


def source_kinds() -> dict[str, str]:
    """Source name → kind, from the source YAML files; empty when they cannot be read."""
    from radar.errors import ConfigError
    from radar.settings import get_settings

    try:
        from crawlers.sources import load_sources

        return {name: s.kind.value for name, s in load_sources(get_settings().sources_path).items()}
    except (ConfigError, ImportError) as exc:
        log.warning("source kinds unavailable (%s); legislation is recognised by its dates only", exc)
        return {}


# --- results -----------------------------------------------------------------------------------------------


@dataclass
class SignalResult:
    week: str
    spikes: list[Signal] = field(default_factory=list)
    legislation: list[Signal] = field(default_factory=list)
    deadlines: list[Signal] = field(default_factory=list)
    incidents: list[Signal] = field(default_factory=list)
    cells_tested: int = 0
    p_cutoff: float | None = None  # the p-value a cell had to be at or below this week
    baseline_weeks: int = 0
    notes: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    removed: int = 0

    @property
    def signals(self) -> list[Signal]:
        return self.spikes + self.legislation + self.incidents + self.deadlines


def _upsert(session: Session, signal: Signal, result: SignalResult) -> Signal:
    existing = session.scalars(select(Signal).where(Signal.key == signal.key)).first()
    if existing is None:
        try:
            with session.begin_nested():
                session.add(signal)
                session.flush()
            result.created += 1
            return signal
        except IntegrityError:
            # Another run stored this key between our look and our insert: update that row instead.
            existing = session.scalars(select(Signal).where(Signal.key == signal.key)).one()
    changed = False
    for name in ("kind", "week", "category", "hazard", "jurisdiction", "count", "baseline", "score", "due",
                 "reason", "notice_ids", "details"):
        value = getattr(signal, name)
        if getattr(existing, name) != value:
            setattr(existing, name, value)
            changed = True
    if changed:
        session.add(existing)
        result.updated += 1
    return existing


# --- computing ----------------------------------------------------------------------------------------------


def compute_signals(engine: Engine, week: str | None = None, *, baseline_weeks: int | None = None,
                    p_threshold: float | None = None, min_count: int | None = None,
                    horizon_days: int | None = None, correction: str | None = None, policy_path=None,
                    today: date | None = None) -> SignalResult:
    """Compute and store the signals of one ISO week (default: the last complete week).

    Incidents are read as stored: run :func:`radar.incidents.link_incidents` first so that counts
    are of incidents. Safe to re-run: rows are keyed and updated in place.
    """
    from radar.settings import get_settings

    s = get_settings()
    week = week or last_complete_week(today)
    start = week_start(week)
    end = start + timedelta(days=7)
    weeks_back = int(s.signal_baseline_weeks if baseline_weeks is None else baseline_weeks)
    p_threshold = float(s.signal_spike_p if p_threshold is None else p_threshold)
    min_count = int(s.signal_spike_min_count if min_count is None else min_count)
    horizon = int(s.signal_deadline_horizon_days if horizon_days is None else horizon_days)
    correction = str(s.signal_spike_correction if correction is None else correction).strip().lower()
    if correction not in ("fdr", "none"):
        raise RadarError(f"signal_spike_correction {correction!r}: use fdr (Benjamini–Hochberg) or none")
    result = SignalResult(week=iso_week(start))

    with Session(engine, expire_on_commit=False) as session:
        notice_rows = session.execute(select(
            Notice.id, Notice.source, Notice.version, Notice.title, Notice.published, Notice.updated, Notice.first_seen,
            Notice.effective_date, Notice.comment_deadline, Notice.labels,
        )).all()
        day_of = {n.id: _notice_day(n.published, n.updated, n.first_seen) for n in notice_rows}
        members: dict[int, list[int]] = defaultdict(list)
        incident_of: dict[int, int] = {}
        for notice_id, incident_id in session.execute(select(IncidentMember.notice_id, IncidentMember.incident_id)):
            if notice_id not in incident_of:
                incident_of[notice_id] = incident_id
                members[incident_id].append(notice_id)
        incidents = {i.id: i for i in session.scalars(select(Incident).where(Incident.id.in_(list(members) or [-1])))}

        _spikes(session, result, notice_rows, day_of, members, incident_of, start, weeks_back, p_threshold, min_count,
                correction)
        # A spike of this week that no longer passes (notices reclassified, incidents merged, another threshold)
        # is withdrawn, so the week's signals are what the test says now.
        fired_keys = {sig.key for sig in result.spikes}
        for old in session.scalars(select(Signal).where(Signal.kind == "spike", Signal.week == result.week)):
            if old.key not in fired_keys:
                session.delete(old)
                result.removed += 1
        kinds = source_kinds()
        _legislation(session, result, notice_rows, kinds, start, end)
        _deadlines(session, result, notice_rows, start, horizon, policy_path)
        _incident_signals(session, result, incidents, members, notice_rows, day_of, start, end)
        session.commit()
    log.info("signals %s: %d spikes (%d cells tested), %d legislation, %d incidents, %d deadlines", result.week,
             len(result.spikes), result.cells_tested, len(result.legislation), len(result.incidents), len(result.deadlines))
    return result


def _spikes(session, result, notice_rows, day_of, members, incident_of, start, weeks_back, p_threshold, min_count,
            correction) -> None:
    known_days = [d for d in day_of.values() if d]
    if not known_days:
        result.notes.append("no dated notices: no spike test")
        return
    first_week_start = min(known_days) - timedelta(days=min(known_days).weekday())
    available = max(0, (start - first_week_start).days // 7)
    baseline_weeks = min(weeks_back, available)
    result.baseline_weeks = baseline_weeks
    if baseline_weeks < MIN_BASELINE_WEEKS:
        result.notes.append(
            f"only {baseline_weeks} week(s) of history before {result.week} (at least {MIN_BASELINE_WEEKS} needed): "
            "no spike test this week"
        )
        return
    window_start = start - timedelta(days=7 * baseline_weeks)
    window_end = start + timedelta(days=7)
    # Units: incidents (dated by their earliest notice) and notices linked to nothing.
    units: dict[tuple[str, int], tuple[date, list[int]]] = {}
    for notice in notice_rows:
        incident_id = incident_of.get(notice.id)
        if incident_id is None:
            day = day_of.get(notice.id)
            if day:
                units[("n", notice.id)] = (day, [notice.id])
    for incident_id, ids in members.items():
        days = [day_of[i] for i in ids if day_of.get(i)]
        if days:
            units[("i", incident_id)] = (min(days), sorted(ids))
    in_window = {u: v for u, v in units.items() if window_start <= v[0] < window_end}
    classes = _load_classes(session, [nid for _, ids in in_window.values() for nid in ids])

    counts: dict[tuple, list[int]] = defaultdict(lambda: [0] * (baseline_weeks + 1))
    week_units: dict[tuple, list[tuple[str, int]]] = defaultdict(list)
    for unit, (day, ids) in in_window.items():
        slot = (day - window_start).days // 7
        cats: set[str] = set()
        hazards: set[str] = set()
        juris: set[str] = set()
        for nid in ids:
            c = classes.get(nid, {})
            for value, _ in c.get("category", []):
                cats.update(category_with_parents(value))
            hazards.update(v for v, _ in c.get("hazard", []))
            juris.update(v for v, _ in c.get("jurisdiction", []))
        if not cats and not hazards:
            continue  # nothing to count it under
        for cell in product(sorted(cats) or [None], sorted(hazards) or [None], sorted(juris) or [None]):
            counts[cell][slot] += 1
            if slot == baseline_weeks:
                week_units[cell].append(unit)

    tested: dict[tuple, tuple[float, float, int, list[int]]] = {}
    for cell, series in counts.items():
        count = series[baseline_weeks]
        if count == 0:
            continue
        baseline_total = sum(series[:baseline_weeks])
        _, p, mu = spike_test(count, baseline_total, baseline_weeks, p_threshold=p_threshold, min_count=min_count)
        tested[cell] = (p, mu, baseline_total, series[:baseline_weeks])
    result.cells_tested = len(tested)
    threshold = p_threshold
    if correction == "fdr" and tested:
        threshold = bh_threshold([v[0] for v in tested.values()], p_threshold)
    result.p_cutoff = threshold
    fired: dict[tuple, tuple[float, float, int, list[int]] | None] = {
        cell: value for cell, value in tested.items()
        if counts[cell][baseline_weeks] >= min_count and value[0] < p_threshold and value[0] <= threshold
    }
    # A parent category whose spike rests on exactly the incidents of a child's spike says nothing new.
    for cell in sorted(fired, key=lambda c: (c[0] or "").count("."), reverse=False):
        category, hazard, jurisdiction = cell
        if category is None:
            continue
        units_here = set(week_units[cell])
        for other in fired:
            if other != cell and other[1:] == cell[1:] and other[0] and other[0].startswith(category + ".") \
                    and set(week_units[other]) == units_here:
                fired[cell] = None  # type: ignore[assignment]
                break
    for cell, value in sorted(fired.items(), key=lambda kv: (kv[1][0] if kv[1] else 1.0, str(kv[0]))):
        if value is None:
            continue
        p, mu, baseline_total, baseline_series = value
        category, hazard, jurisdiction = cell
        unit_list = sorted(week_units[cell])
        count = len(unit_list)
        notice_ids = sorted({nid for u in unit_list for nid in in_window[u][1]})
        incident_ids = sorted(uid for kind, uid in unit_list if kind == "i")
        scope = " × ".join(x for x in (category, hazard, jurisdiction) if x)
        reason = (
            f"{count} incidents of {scope} in {result.week} ({len(notice_ids)} notices), against {baseline_total} in the "
            f"{baseline_weeks} weeks before; at the baseline rate of {mu:.2f} a week a one-sided Poisson test gives "
            f"P(≥{count}) = {p:.2g}, below the threshold {p_threshold:g}"
            + (f" and below {threshold:.2g}, the Benjamini–Hochberg cut-off for the {result.cells_tested} cells tested this "
               f"week at a false discovery rate of {p_threshold:g}" if correction == "fdr" else "")
            + f" (and {count} ≥ the minimum {min_count})"
        )
        signal = Signal(
            key=f"spike:{result.week}:{category or '*'}|{hazard or '*'}|{jurisdiction or '*'}"[:300],
            kind="spike", week=result.week, category=category, hazard=hazard, jurisdiction=jurisdiction,
            count=count, baseline=round(baseline_total / baseline_weeks, 4), score=round(-math.log10(max(p, 1e-300)), 3),
            reason=reason, notice_ids=notice_ids,
            details={"test": "one-sided Poisson", "p_value": p, "expected_rate": mu, "p_threshold": p_threshold,
                     "correction": correction, "p_cutoff": threshold, "cells_tested": result.cells_tested,
                     "min_count": min_count, "baseline_weeks": baseline_weeks, "baseline_counts": baseline_series,
                     "incident_ids": incident_ids},
        )
        result.spikes.append(_upsert(session, signal, result))


def _legislation(session, result, notice_rows, kinds, start, end) -> None:
    picked = []
    for n in notice_rows:
        is_law = kinds.get(n.source) == "legislation" or n.effective_date or n.comment_deadline
        if not is_law:
            continue
        if n.published and start <= n.published < end:
            picked.append((n, "new", n.published))
        elif n.updated and start <= n.updated < end and n.version > 1:
            picked.append((n, "amended", n.updated))
    if not picked:
        return
    classes = _load_classes(session, [n.id for n, _, _ in picked])
    for n, what, day in picked:
        c = classes.get(n.id, {})
        category = best_category(c)
        categories = sorted(v for v, _ in c.get("category", []))
        jurisdictions = sorted(v for v, _ in c.get("jurisdiction", []))
        source_kind = kinds.get(n.source, "unknown kind")
        dates = []
        if n.effective_date:
            dates.append(f"applies from {n.effective_date.isoformat()}")
        if n.comment_deadline:
            dates.append(f"comments due {n.comment_deadline.isoformat()}")
        affecting = f"affecting {', '.join(categories)}" if categories else "category not classified"
        reason = (
            f"{'New' if what == 'new' else 'Amended'} {'legislation' if source_kind == 'legislation' else 'rule-making'} "
            f"from {n.source} ({source_kind}), {what} on {day.isoformat()}: {n.title!r}, {affecting}"
            + (f"; {'; '.join(dates)}" if dates else "")
        )
        signal = Signal(
            key=f"legislation:{n.id}:{day.isoformat()}", kind="legislation", week=result.week, category=category,
            jurisdiction=jurisdictions[0] if jurisdictions else None, count=1, score=float(len(categories) or 1),
            due=n.effective_date or n.comment_deadline, reason=reason, notice_ids=[n.id],
            details={"what": what, "source_kind": source_kind, "categories": categories, "jurisdictions": jurisdictions,
                     "effective_date": n.effective_date.isoformat() if n.effective_date else None,
                     "comment_deadline": n.comment_deadline.isoformat() if n.comment_deadline else None},
        )
        result.legislation.append(_upsert(session, signal, result))


def _label_dates(labels: dict[str, Any] | None) -> list[tuple[str, date]]:
    """Ends of transition periods a source states in its labels (``transition_end: 2027-12-13``)."""
    out = []
    for name, value in (labels or {}).items():
        if "transition" not in str(name).lower():
            continue
        for item in value if isinstance(value, list) else [value]:
            try:
                out.append(("transition_end", date.fromisoformat(str(item)[:10])))
            except ValueError:
                log.debug("label %s=%r is not a date", name, item)
    return out


def _deadlines(session, result, notice_rows, start, horizon, policy_path) -> None:
    until = start + timedelta(days=horizon)
    found: list[tuple[str, int | None, date, str, list[int]]] = []
    for n in notice_rows:
        dates = []
        if n.effective_date:
            dates.append(("effective", n.effective_date))
        if n.comment_deadline:
            dates.append(("comment_deadline", n.comment_deadline))
        dates += _label_dates(n.labels)
        for what, due in dates:
            if start <= due <= until:
                found.append((what, n.id, due, n.title, [n.id]))
    classes = _load_classes(session, [f[1] for f in found if f[1] is not None])
    words = {"effective": "takes effect", "comment_deadline": "closes for comments", "transition_end": "ends its transition period"}
    for what, notice_id, due, title, ids in found:
        c = classes.get(notice_id, {})
        days = (due - start).days
        reason = f"{title!r} {words[what]} on {due.isoformat()}, {days} days after the start of {result.week}"
        signal = Signal(
            key=f"deadline:{what}:{notice_id}:{due.isoformat()}", kind="deadline", week=iso_week(due),
            category=best_category(c), jurisdiction=(sorted(v for v, _ in c.get("jurisdiction", [])) or [None])[0],
            count=1, score=float(max(0, horizon - days)), due=due, reason=reason, notice_ids=ids,
            details={"what": what, "days_from_week_start": days},
        )
        result.deadlines.append(_upsert(session, signal, result))
    for rule_id, title, due in _rule_dates(policy_path):
        if not start <= due <= until:
            continue
        days = (due - start).days
        signal = Signal(
            key=f"deadline:rule:{rule_id}:{due.isoformat()}", kind="deadline", week=iso_week(due), due=due,
            count=1, score=float(max(0, horizon - days)), notice_ids=[],
            reason=f"policy rule {rule_id} ({title}) takes effect on {due.isoformat()}, {days} days after the start of {result.week}",
            details={"what": "rule_effective", "rule_id": rule_id, "days_from_week_start": days},
        )
        result.deadlines.append(_upsert(session, signal, result))
    result.deadlines.sort(key=lambda s: (s.due, s.key))


def _rule_dates(policy_path) -> list[tuple[str, str, date]]:
    from radar.errors import ConfigError

    try:
        from radar.drafting import policy_path as default_path
        from radar.rules import load_rules

        ruleset = load_rules(policy_path or default_path())
    except (ConfigError, ImportError) as exc:
        log.warning("policy rules unavailable for the calendar: %s", exc)
        return []
    return [(r.id, r.title, r.effective_date) for r in ruleset.rules]


def _incident_signals(session, result, incidents, members, notice_rows, day_of, start, end) -> None:
    source_of = {n.id: n.source for n in notice_rows}
    for incident_id, ids in sorted(members.items()):
        sources = sorted({source_of[i] for i in ids if i in source_of})
        if len(sources) < MIN_INCIDENT_SOURCES:
            continue
        if not any(day_of.get(i) and start <= day_of[i] < end for i in ids):
            continue
        incident = incidents.get(incident_id)
        if incident is None:
            continue
        reason = (
            f"one {incident.method.replace('_', ' + ')}-linked incident seen by {len(sources)} sources "
            f"({', '.join(sources)}) in {len(ids)} notices, linked with confidence {incident.confidence:.2f}: "
            f"{incident.title!r}"
        )
        signal = Signal(
            key=f"incident:{incident.key}:{len(sources)}"[:300], kind="incident", week=result.week, count=len(ids),
            score=float(len(sources)), reason=reason, notice_ids=sorted(ids),
            details={"incident_id": incident_id, "sources": sources, "method": incident.method,
                     "confidence": incident.confidence},
        )
        result.incidents.append(_upsert(session, signal, result))


def list_signals(engine: Engine, *, week: str | None = None, kinds: Iterable[str] | None = None,
                 since: date | None = None) -> list[Signal]:
    """Stored signals, newest week first; ``since`` keeps signals created or due on or after that day."""
    with Session(engine, expire_on_commit=False) as session:
        query = select(Signal)
        if week:
            query = query.where(Signal.week == iso_week(week_start(week)))
        if kinds:
            query = query.where(Signal.kind.in_(list(kinds)))
        rows = list(session.scalars(query.order_by(Signal.week.desc(), Signal.kind, Signal.score.desc(), Signal.id)))
    if since:
        rows = [r for r in rows if (r.due and r.due >= since) or week_start(r.week) + timedelta(days=6) >= since]
    return rows


__all__ = [
    "SignalResult", "best_category", "bh_threshold", "category_with_parents", "compute_signals", "iso_week", "last_complete_week",
    "list_signals", "poisson_sf", "spike_test", "week_start",
]
