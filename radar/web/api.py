"""The JSON API under /api: the same search, notices, sources and proposals the pages show, with OpenAPI.

Read-only, so no CSRF token is needed; authenticate with the web session or HTTP Basic.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from radar.errors import SearchQueryError
from radar.models import User
from radar.settings import get_settings
from radar.web import data
from radar.web.auth import api_user
from radar.search import search as run_search
from radar.web.facets import facet_counts
from radar.web.query import SearchParams

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(api_user)])


class Hit(BaseModel):
    id: int
    source: str
    source_id: str
    title: str
    url: str
    published: Optional[date]
    snippet: str = Field(description="Text around the matches; matched words are in [square brackets].")
    score: Optional[float]
    jurisdictions: list[str]
    categories: list[str]
    hazards: list[str]


class FacetCount(BaseModel):
    value: str
    count: int


class FacetsOut(BaseModel):
    total: int
    approximate: bool = Field(description="True when counts were estimated from a sample of a very large result.")
    timed_out: bool = Field(description="True when counting took longer than the web_facet_time_limit_ms setting; no counts then.")
    facets: dict[str, list[FacetCount]]
    years: list[FacetCount]
    gtin: dict[str, int]


class SearchOut(BaseModel):
    query: str
    total: int
    total_approximate: bool = Field(False, description="True when the total was estimated from a sample of the archive "
                                                      "(above the web_count_estimate_above setting), to three significant figures.")
    offset: int
    limit: int
    results: list[Hit]
    facets: Optional[FacetsOut] = None


class FindingOut(BaseModel):
    axis: str
    value: str
    label: str
    score: float
    method: str
    field: str
    evidence: str
    start: Optional[int]
    end: Optional[int]
    role: Optional[str]
    pipeline_version: str
    notice_version: int


class VersionOut(BaseModel):
    version: int
    seen_at: datetime
    content_hash: str
    fields: dict[str, Any]


class RelatedOut(BaseModel):
    id: int
    source: str
    source_id: str
    title: str
    published: Optional[date]
    method: str
    confidence: float


class IncidentOut(BaseModel):
    id: int
    key: str
    title: str
    method: str
    confidence: float
    confirmed_by: Optional[str]
    others: list[RelatedOut]


class NoticeOut(BaseModel):
    id: int
    source: str
    source_id: str
    version: int
    url: str
    title: str
    text: str
    published: Optional[date]
    updated: Optional[date]
    effective_date: Optional[date]
    comment_deadline: Optional[date]
    language: Optional[str]
    product_name: Optional[str]
    brand: Optional[str]
    model: Optional[str]
    gtin: Optional[str]
    batch: Optional[str]
    category_labels: list[str]
    risk_labels: list[str]
    country_labels: list[str]
    labels: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    raw_url: Optional[str]
    licence: Optional[str]
    attribution: Optional[str]
    findings: list[FindingOut]
    versions: list[VersionOut]
    incidents: list[IncidentOut]


class RunOut(BaseModel):
    id: int
    started_at: datetime
    finished_at: Optional[datetime]
    status: str
    records: int
    new: int
    updated: int
    unchanged: int
    rejected: int
    errors: int
    messages: list[str]


class SourceOut(BaseModel):
    name: str
    title: Optional[str]
    kind: Optional[str]
    jurisdiction: Optional[str]
    enabled: Optional[bool]
    schedule: Optional[str]
    licence: Optional[str]
    attribution: Optional[str]
    status: str
    notices: int
    next_run: Optional[datetime]
    runs: list[RunOut]


class ImpactOut(BaseModel):
    id: int
    catalogue: str
    listings_scanned: int
    hits: int
    already_hit: int
    newly_hit: int
    exact: bool
    method: str
    hits_low: Optional[float]
    hits_high: Optional[float]
    details: dict[str, Any]
    created_at: datetime


class ReviewOut(BaseModel):
    reviewer: str
    decision: str
    comment: str
    edited_rule: Optional[dict[str, Any]]
    policy_hash_before: Optional[str]
    policy_hash_after: Optional[str]
    created_at: datetime


class ProposalOut(BaseModel):
    id: int
    kind: str
    rule_id: str
    title: str
    status: str
    created_at: datetime
    updated_at: datetime
    impact: Optional[ImpactOut] = Field(None, description="The newest impact estimate, if any.")


class ProposalDetailOut(ProposalOut):
    rationale: str
    diff: str
    rule: dict[str, Any]
    base_hash: str
    evidence_notice_ids: list[int]
    signal_ids: list[int]
    impacts: list[ImpactOut]
    reviews: list[ReviewOut]


def _impact(estimate) -> ImpactOut | None:
    return ImpactOut.model_validate(estimate, from_attributes=True) if estimate is not None else None


@router.get("/search", response_model=SearchOut, summary="Search notices by full text and facets")
def api_search(
    request: Request,
    q: str = Query("", description='Words (prefixes match), "phrases", word OR word, -excluded.'),
    source: list[str] = Query([], description="Source name; repeatable."),
    market: list[str] = Query([], description="Jurisdiction id (juris.eu.de) or market code (DE); repeatable."),
    category: list[str] = Query([], description="Category id, children included; repeatable."),
    hazard: list[str] = Query([], description="Hazard id; repeatable."),
    policy: list[str] = Query([], description="Policy class id; repeatable."),
    since: Optional[date] = Query(None, description="Published on or after."),
    until: Optional[date] = Query(None, description="Published on or before."),
    gtin: Literal["", "yes", "no"] = Query("", description="Only notices with (yes) or without (no) a GTIN."),
    sort: Literal["date", "relevance"] = "date",
    limit: int = Query(20, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=100_000),
    facets: bool = Query(False, description="Also count the matches per source, market, category, hazard, policy, year, GTIN."),
) -> SearchOut:
    try:
        params = SearchParams(q=q, source=source, market=market, category=category, hazard=hazard, policy=policy,
                              since=since, until=until, gtin=gtin, sort=sort)
        SearchParams.from_pairs(params.pairs())  # the same limits as the pages
        filters = params.filters(data.market_lookup(data.taxonomy()))
        result = run_search(request.app.state.engine, q, filters, sort=sort, limit=limit, offset=offset,
                            estimate_above=int(get_settings().web_count_estimate_above) or None)
        counted = None
        if facets:
            settings = get_settings()
            counted = facet_counts(request.app.state.engine, q, filters, total=result.total,
                                   sample_above=int(settings.web_facet_sample_above),
                                   time_limit=int(settings.web_facet_time_limit_ms) / 1000,
                                   match_ids=result.match_ids).as_json()
    except SearchQueryError as exc:
        raise HTTPException(400, str(exc)) from None
    return SearchOut(query=q, total=result.total, total_approximate=result.approximate, offset=offset, limit=limit,
                     results=[Hit(**h.as_json()) for h in result.hits], facets=counted)


@router.get("/notices/{notice_id}", response_model=NoticeOut, summary="One notice with its findings, versions and incident")
def api_notice(request: Request, notice_id: int) -> NoticeOut:
    view = data.notice_view(request.app.state.engine, notice_id)
    if view is None:
        raise HTTPException(404, f"no notice {notice_id}")
    n = view.notice
    values = {name: getattr(n, name) for name in NoticeOut.model_fields if hasattr(n, name)}
    values.update(
        raw_url=f"/notices/{n.id}/raw" if n.raw_sha256 else None,
        licence=view.source.licence if view.source else None,
        attribution=view.source.attribution if view.source else None,
        findings=[FindingOut(axis=f.axis, value=f.value, label=f.label, score=f.score, method=f.method, field=f.field,
                             evidence=f.evidence, start=f.start, end=f.end, role=f.role,
                             pipeline_version=f.pipeline_version, notice_version=f.notice_version) for f in view.findings],
        versions=[VersionOut(version=v.version, seen_at=v.seen_at, content_hash=v.content_hash, fields=v.fields) for v in view.versions],
        incidents=[IncidentOut(id=i.id, key=i.key, title=i.title, method=i.method, confidence=i.confidence,
                               confirmed_by=i.confirmed_by,
                               others=[RelatedOut(**vars(o)) for o in i.others]) for i in view.incidents],
    )
    return NoticeOut(**values)


@router.get("/sources", response_model=list[SourceOut], summary="Every source with its last runs and health")
def api_sources(request: Request) -> list[SourceOut]:
    health, error = data.source_health(request.app.state.engine)
    if error:
        log.info("sources API answered without configurations: %s", error)
    out = []
    for h in health:
        c = h.config
        out.append(SourceOut(
            name=h.name, title=c.title if c else None, kind=c.kind.value if c else None,
            jurisdiction=c.jurisdiction if c else None, enabled=c.enabled if c else None, schedule=c.schedule if c else None,
            licence=c.licence if c else None, attribution=c.attribution if c else None, status=h.status,
            notices=h.notices, next_run=h.next_run,
            runs=[RunOut.model_validate(r, from_attributes=True) for r in h.runs],
        ))
    return out


@router.get("/proposals", response_model=list[ProposalOut], summary="Proposed rule changes with status and impact")
def api_proposals(request: Request, status: Optional[Literal["pending", "accepted", "rejected", "stale"]] = None) -> list[ProposalOut]:
    rows = data.proposal_rows(request.app.state.engine, status)
    return [ProposalOut(id=r.proposal.id, kind=r.proposal.kind, rule_id=r.proposal.rule_id, title=r.proposal.title,
                        status=r.proposal.status, created_at=r.proposal.created_at, updated_at=r.proposal.updated_at,
                        impact=_impact(r.impact)) for r in rows]


@router.get("/proposals/{proposal_id}", response_model=ProposalDetailOut, summary="One proposal: diff, rationale, evidence, impact, reviews")
def api_proposal(request: Request, proposal_id: int) -> ProposalDetailOut:
    view = data.proposal_view(request.app.state.engine, proposal_id)
    if view is None:
        raise HTTPException(404, f"no proposal {proposal_id}")
    p = view.proposal
    impacts = [_impact(i.estimate) for i in view.impacts]
    return ProposalDetailOut(
        id=p.id, kind=p.kind, rule_id=p.rule_id, title=p.title, status=p.status, created_at=p.created_at,
        updated_at=p.updated_at, impact=impacts[0] if impacts else None, rationale=p.rationale, diff=p.diff, rule=p.rule,
        base_hash=p.base_hash, evidence_notice_ids=[e for e in p.evidence_notice_ids if isinstance(e, int)],
        signal_ids=[s for s in p.signal_ids if isinstance(s, int)], impacts=impacts,
        reviews=[ReviewOut.model_validate(r, from_attributes=True) for r in view.reviews],
    )


@router.get("/me", summary="The authenticated user")
def api_me(user: User = Depends(api_user)) -> dict[str, str]:
    return {"username": user.username, "role": user.role}

