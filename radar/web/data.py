"""The records behind each page, read once here so the HTML pages and the JSON API show the same data."""

from __future__ import annotations

import importlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import yaml
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from radar.errors import ConfigError
from radar.models import (
    Classification,
    ImpactEstimate,
    Incident,
    IncidentMember,
    Notice,
    NoticeVersion,
    Proposal,
    Review,
    SavedSearch,
    SourceRun,
    Subscription,
)
from radar.settings import get_settings
from radar.web import render

log = logging.getLogger(__name__)

RUNS_PER_SOURCE = 5


# -- configuration the pages show: taxonomy labels and source metadata ----------------------------


def taxonomy():
    """The taxonomy, or None when it cannot be loaded (pages then show bare ids)."""
    try:
        from nlp.taxonomy import load_cached

        return load_cached(get_settings().taxonomy_path)
    except (ConfigError, ImportError, OSError) as exc:
        log.info("taxonomy not loaded, pages show bare ids: %s", exc)
        return None


def label_of(tax, value: str) -> str:
    node = tax.get(value) if tax is not None else None
    return node.label if node is not None else value


def description_of(tax, value: str) -> str:
    node = tax.get(value) if tax is not None else None
    return node.description if node is not None else ""


def market_lookup(tax):
    """A function from a market code (DE, UK, EU) to its jurisdiction id, for the market filter."""
    def lookup(code: str) -> str | None:
        return tax.jurisdiction_for_market(code) if tax is not None else None
    return lookup


def source_configs() -> tuple[dict[str, Any], str | None]:
    """Every configured source by name, and the error that stopped loading them (or None)."""
    from crawlers.sources import load_sources

    try:
        return load_sources(get_settings().sources_path), None
    except ConfigError as exc:
        log.warning("sources not loaded for the web pages: %s", exc)
        return {}, str(exc)


# -- notices --------------------------------------------------------------------------------------


@dataclass
class Finding:
    number: int
    axis: str
    value: str
    label: str
    description: str
    score: float
    method: str
    field: str
    evidence: str
    start: int | None
    end: int | None
    role: str | None
    pipeline_version: str
    notice_version: int
    placed: bool = False  # shown as a highlight in the text


@dataclass
class Related:
    id: int
    source: str
    source_id: str
    title: str
    published: Any
    method: str
    confidence: float


@dataclass
class IncidentView:
    id: int
    key: str
    title: str
    method: str
    confidence: float
    confirmed_by: str | None
    others: list[Related]


@dataclass
class VersionView:
    version: int
    seen_at: datetime
    content_hash: str
    has_raw: bool
    fields: dict[str, Any]


@dataclass
class NoticeView:
    notice: Notice
    title_segments: list[render.Segment]
    text_segments: list[render.Segment]
    findings: list[Finding]
    findings_stale: bool  # the findings describe an older version than the one shown
    labels: list[tuple[str, str]]  # the source's own labels, (name, text)
    versions: list[VersionView]
    diffs: list[tuple[int, int, list[render.FieldDiff]]]  # (from version, to version, changed fields)
    incidents: list[IncidentView]
    source: Any  # SourceConfig or None
    source_error: str | None


def notice_view(engine: Engine, notice_id: int, compare: tuple[int, int] | None = None) -> NoticeView | None:
    """A notice with its findings placed in its text, its versions and diffs, and its incident siblings."""
    tax = taxonomy()
    with Session(engine, expire_on_commit=False) as session:
        notice = session.get(Notice, notice_id)
        if notice is None:
            return None
        rows = list(session.exec(select(Classification).where(Classification.notice_id == notice_id)
                                 .order_by(Classification.field, Classification.start, Classification.axis, Classification.id)))
        versions = list(session.exec(select(NoticeVersion).where(NoticeVersion.notice_id == notice_id).order_by(NoticeVersion.version)))
        memberships = list(session.exec(select(IncidentMember).where(IncidentMember.notice_id == notice_id)))
        incidents = []
        for membership in memberships:
            incident = session.get(Incident, membership.incident_id)
            if incident is None:
                continue
            others = session.exec(
                select(IncidentMember, Notice).join(Notice, Notice.id == IncidentMember.notice_id)
                .where(IncidentMember.incident_id == incident.id, IncidentMember.notice_id != notice_id)
                .order_by(Notice.published.desc(), Notice.id)
            ).all()
            incidents.append(IncidentView(
                id=incident.id, key=incident.key, title=incident.title, method=incident.method,
                confidence=incident.confidence, confirmed_by=incident.confirmed_by,
                others=[Related(n.id, n.source, n.source_id, n.title, n.published, m.method, m.confidence) for m, n in others],
            ))
    findings = [
        Finding(number=i + 1, axis=r.axis, value=r.value, label=label_of(tax, r.value), description=description_of(tax, r.value),
                score=r.score, method=r.method, field=r.field, evidence=r.evidence, start=r.start, end=r.end, role=r.role,
                pipeline_version=r.pipeline_version, notice_version=r.notice_version)
        for i, r in enumerate(rows)
    ]
    # Spans index the text of the version they were found in; on a newer version they would point anywhere.
    stale = any(f.notice_version != notice.version for f in findings)
    spans: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for f in findings:
        if f.notice_version == notice.version and f.field in ("title", "text") and f.start is not None and f.end is not None:
            spans[f.field].append((f.number, f.start, f.end))
    title_segments = render.segments(notice.title, spans["title"])
    text_segments = render.segments(notice.text, spans["text"])
    placed = {n for seg in title_segments + text_segments for n in seg.findings}
    for f in findings:
        f.placed = f.number in placed
    version_views = [VersionView(v.version, v.seen_at, v.content_hash, bool(v.raw_sha256), v.fields) for v in versions]
    diffs = []
    by_number = {v.version: v for v in version_views}
    if compare and compare[0] in by_number and compare[1] in by_number and compare[0] != compare[1]:
        pairs = [compare]
    else:
        pairs = [(a.version, b.version) for a, b in zip(version_views, version_views[1:])][::-1][:5]
    for a, b in pairs:
        diffs.append((a, b, render.version_diff(by_number[a].fields, by_number[b].fields)))
    configs, error = source_configs()
    return NoticeView(
        notice=notice, title_segments=title_segments, text_segments=text_segments, findings=findings,
        findings_stale=stale, labels=source_labels(notice), versions=version_views[::-1], diffs=diffs,
        incidents=incidents, source=configs.get(notice.source), source_error=error,
    )


def source_labels(notice: Notice) -> list[tuple[str, str]]:
    out = []
    for name, values in (("category", notice.category_labels), ("risk", notice.risk_labels), ("country", notice.country_labels)):
        if values:
            out.append((name, render.label_text(values)))
    for name, value in sorted((notice.labels or {}).items()):
        text = render.label_text(value)
        if text:
            out.append((str(name), text))
    for name in ("product_name", "brand", "model", "gtin", "batch"):
        value = getattr(notice, name)
        if value:
            out.append((name.replace("_", " "), str(value)))
    return out


def raw_snapshot(engine: Engine, notice_id: int, version: int | None = None) -> tuple[Notice, bytes, int] | None:
    """The stored raw body of a notice (its current version, or `version`), or None."""
    from radar.store import load_raw

    with Session(engine, expire_on_commit=False) as session:
        notice = session.get(Notice, notice_id)
        if notice is None:
            return None
        sha, number = notice.raw_sha256, notice.version
        if version is not None and version != notice.version:
            row = session.exec(select(NoticeVersion).where(NoticeVersion.notice_id == notice_id,
                                                           NoticeVersion.version == version)).first()
            if row is None:
                return None
            sha, number = row.raw_sha256, version
        if not sha:
            return None
        body = load_raw(session, sha)
        return (notice, body, number) if body is not None else None


# -- proposals ------------------------------------------------------------------------------------


@dataclass
class ProposalRow:
    proposal: Proposal
    impact: ImpactEstimate | None
    reviews: int


def proposal_rows(engine: Engine, status: str | None = None) -> list[ProposalRow]:
    with Session(engine, expire_on_commit=False) as session:
        query = select(Proposal).order_by(Proposal.created_at.desc(), Proposal.id.desc())
        if status:
            query = query.where(Proposal.status == status)
        proposals = list(session.exec(query))
        ids = [p.id for p in proposals]
        impacts: dict[int, ImpactEstimate] = {}
        reviews: dict[int, int] = {}
        if ids:
            for estimate in session.exec(select(ImpactEstimate).where(ImpactEstimate.proposal_id.in_(ids))
                                         .order_by(ImpactEstimate.created_at, ImpactEstimate.id)):
                impacts[estimate.proposal_id] = estimate  # the newest wins
            for proposal_id, count in session.exec(select(Review.proposal_id, func.count()).where(Review.proposal_id.in_(ids))
                                                   .group_by(Review.proposal_id)):
                reviews[proposal_id] = count
    return [ProposalRow(p, impacts.get(p.id), reviews.get(p.id, 0)) for p in proposals]


def proposal_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {status: count for status, count in session.exec(select(Proposal.status, func.count()).group_by(Proposal.status))}


@dataclass
class EvidenceNotice:
    id: int
    source: str
    source_id: str
    title: str
    published: Any
    url: str


@dataclass
class ImpactView:
    estimate: ImpactEstimate
    interval: str
    market_chart: render.BarChart | None
    category_chart: render.BarChart | None
    examples: list[dict[str, str]]
    example_columns: list[str]


@dataclass
class ProposalView:
    proposal: Proposal
    diff_rows: list[render.DiffRow]
    evidence: list[EvidenceNotice]
    missing_evidence: list[int]
    impacts: list[ImpactView]
    reviews: list[Review]
    rule_yaml: str


SERIES_SPLIT = [("newly", "newly hit"), ("already", "already hit")]
SERIES_HITS = [("hits", "hits")]


def breakdown(value: Any) -> tuple[list[tuple[str, list[int]]], list[tuple[str, str]]]:
    """Rows for a chart from an impact estimate's per-market or per-category figures.

    Accepts {key: hits}, {key: {hits, newly_hit, already_hit}} or [{key/market/category, hits, ...}];
    with newly and already hit both known, the bars are split in two.
    """
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        for entry in value:
            if isinstance(entry, dict):
                key = entry.get("key") or entry.get("market") or entry.get("category") or entry.get("name") or "?"
                items.append((str(key), entry))
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                items.append((str(entry[0]), entry[1]))
    rows: list[tuple[str, list[int]]] = []
    split = all(isinstance(v, dict) and "newly_hit" in v and "already_hit" in v for _, v in items) and items
    for key, v in items:
        if split:
            rows.append((str(key), [_int(v.get("newly_hit")), _int(v.get("already_hit"))]))
        elif isinstance(v, dict):
            rows.append((str(key), [_int(v.get("hits", v.get("count")))]))
        else:
            rows.append((str(key), [_int(v)]))
    rows.sort(key=lambda r: (-sum(r[1]), r[0]))
    return rows[:15], (SERIES_SPLIT if split else SERIES_HITS)


def _int(value: Any) -> int:
    try:
        return int(round(float(value)))
    except (TypeError, ValueError):
        return 0


def impact_view(estimate: ImpactEstimate) -> ImpactView:
    details = estimate.details or {}
    market_rows, market_series = breakdown(details.get("by_market") or details.get("markets"))
    category_rows, category_series = breakdown(details.get("by_category") or details.get("categories"))
    examples_raw = details.get("examples") or details.get("example_hits") or []
    examples: list[dict[str, str]] = []
    columns: list[str] = []
    for entry in examples_raw[:20] if isinstance(examples_raw, list) else []:
        if not isinstance(entry, dict):
            entry = {"listing": entry}
        row = {str(k): render.label_text(v) for k, v in entry.items()}
        for key in row:
            if key not in columns:
                columns.append(key)
        examples.append(row)
    if estimate.hits_low is not None and estimate.hits_high is not None:
        interval = f"{estimate.hits_low:,.0f} – {estimate.hits_high:,.0f}"
    else:
        interval = ""
    return ImpactView(
        estimate=estimate, interval=interval,
        market_chart=render.bar_chart(market_rows, market_series, title="hits by market"),
        category_chart=render.bar_chart(category_rows, category_series, title="hits by category"),
        examples=examples, example_columns=columns[:8],
    )


def proposal_view(engine: Engine, proposal_id: int) -> ProposalView | None:
    with Session(engine, expire_on_commit=False) as session:
        proposal = session.get(Proposal, proposal_id)
        if proposal is None:
            return None
        ids = [int(i) for i in proposal.evidence_notice_ids or [] if isinstance(i, int) or str(i).isdigit()]
        found = {n.id: n for n in session.exec(select(Notice).where(Notice.id.in_(ids)))} if ids else {}
        estimates = list(session.exec(select(ImpactEstimate).where(ImpactEstimate.proposal_id == proposal_id)
                                      .order_by(ImpactEstimate.created_at.desc(), ImpactEstimate.id.desc())))
        reviews = list(session.exec(select(Review).where(Review.proposal_id == proposal_id).order_by(Review.created_at, Review.id)))
    evidence = [EvidenceNotice(n.id, n.source, n.source_id, n.title, n.published, n.url) for i in ids if (n := found.get(i))]
    return ProposalView(
        proposal=proposal, diff_rows=render.unified_to_rows(proposal.diff), evidence=evidence,
        missing_evidence=[i for i in ids if i not in found], impacts=[impact_view(e) for e in estimates],
        reviews=reviews, rule_yaml=yaml.safe_dump(proposal.rule or {}, sort_keys=False, allow_unicode=True, width=100),
    )


def review_module():
    """radar.review when that stage is installed, else None (the review page is then read-only)."""
    try:
        module = importlib.import_module("radar.review")
    except ImportError as exc:
        if exc.name not in ("radar.review",):
            log.warning("radar.review failed to import: %s", exc)
        return None
    if hasattr(module, "decide") or (hasattr(module, "accept") and hasattr(module, "reject")):
        return module
    return None


def decide(engine: Engine, proposal_id: int, reviewer: str, decision: str, comment: str,
           edited_rule: dict[str, Any] | None = None) -> None:
    """Record a decision through radar.review: its ``decide`` when it has one, else accept / reject."""
    review = review_module()
    if review is None:
        raise ConfigError("the review stage (radar.review) is not installed")
    if hasattr(review, "decide"):
        review.decide(engine, proposal_id, reviewer, decision, comment, edited_rule=edited_rule)
    elif decision == "reject":
        review.reject(engine, proposal_id, reviewer, comment)
    else:
        review.accept(engine, proposal_id, reviewer, comment, edited_rule=edited_rule if decision == "edit" else None)


# -- sources --------------------------------------------------------------------------------------


@dataclass
class SourceHealth:
    name: str
    config: Any  # SourceConfig or None (runs recorded for a source no longer configured)
    runs: list[SourceRun]
    notices: int
    status: str
    next_run: datetime | None

    @property
    def last(self) -> SourceRun | None:
        return self.runs[0] if self.runs else None


def source_health(engine: Engine, runs_per_source: int = RUNS_PER_SOURCE) -> tuple[list[SourceHealth], str | None]:
    configs, error = source_configs()
    with Session(engine, expire_on_commit=False) as session:
        counts = dict(session.exec(select(Notice.source, func.count()).group_by(Notice.source)).all())
        names = sorted(set(configs) | set(session.exec(select(SourceRun.source).distinct())))
        runs: dict[str, list[SourceRun]] = {}
        for name in names:
            runs[name] = list(session.exec(select(SourceRun).where(SourceRun.source == name)
                                           .order_by(SourceRun.id.desc()).limit(runs_per_source)))
    now = datetime.now(timezone.utc)
    out = []
    for name in names:
        config = configs.get(name)
        source_runs = runs.get(name, [])
        status = source_runs[0].status if source_runs else "never run"
        if config is not None and not config.enabled:
            status = "disabled"
        out.append(SourceHealth(name, config, source_runs, counts.get(name, 0), status, _next_run(config, now)))
    return out, error


def _next_run(config, now: datetime) -> datetime | None:
    if config is None or not config.enabled:
        return None
    try:
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(config.schedule, timezone="UTC").get_next_fire_time(None, now)
    except ValueError:
        return None


# -- saved searches and subscriptions -------------------------------------------------------------


def saved_searches(engine: Engine, user_id: int) -> list[SavedSearch]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(SavedSearch).where(SavedSearch.user_id == user_id)
                                 .order_by(SavedSearch.created_at.desc(), SavedSearch.id.desc())))


def subscriptions(engine: Engine) -> list[Subscription]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(Subscription).order_by(Subscription.name)))
