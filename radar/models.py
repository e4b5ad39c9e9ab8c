"""Storage models (SQLModel): source runs, notices with versions, raw bodies, classifications."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SourceRun(SQLModel, table=True):
    """One crawl of one source: when, how much, and whether it was healthy."""

    __tablename__ = "source_run"

    id: Optional[int] = Field(default=None, primary_key=True)
    source: str = Field(index=True, max_length=100)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None
    status: str = Field(default="running", max_length=20)  # running, ok, failed
    records: int = 0  # items the spider yielded
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # items the validate pipeline refused
    bytes: int = 0
    errors: int = 0
    messages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class RawBody(SQLModel, table=True):
    """A response body, stored once per content hash, zlib-compressed, for audit."""

    __tablename__ = "raw_body"

    sha256: str = Field(primary_key=True, max_length=64)
    content_type: str = Field(default="", max_length=200)
    size: int = 0
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    fetched_at: datetime = Field(default_factory=utcnow)


class Notice(SQLModel, table=True):
    """The current version of one regulator notice, recall or article."""

    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_notice_source_id"),
        Index("ix_notice_published", "published"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    source: str = Field(index=True, max_length=100)
    source_id: str = Field(max_length=300)
    version: int = 1
    url: str = Field(default="", sa_column=Column(Text, nullable=False))
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    published: Optional[date] = None
    updated: Optional[date] = None
    effective_date: Optional[date] = None
    comment_deadline: Optional[date] = None
    language: Optional[str] = Field(default=None, max_length=10)
    product_name: Optional[str] = Field(default=None, sa_column=Column(Text))
    brand: Optional[str] = Field(default=None, sa_column=Column(Text))
    model: Optional[str] = Field(default=None, sa_column=Column(Text))
    gtin: Optional[str] = Field(default=None, max_length=64, index=True)
    batch: Optional[str] = Field(default=None, sa_column=Column(Text))
    category_labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    risk_labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    country_labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    raw_sha256: Optional[str] = Field(default=None, foreign_key="raw_body.sha256", max_length=64)
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    classified_version: int = 0  # the notice version the stored classifications describe
    # Its counted findings as full-text tokens, so a search with words matches its taxonomy filters in the
    # full-text index (radar.search.facet_keys; kept by radar.search.refresh_facet_keys).
    facet_keys: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class NoticeVersion(SQLModel, table=True):
    """Every version of a notice ever seen, the current one included, so nothing a source edited is lost."""

    __tablename__ = "notice_version"
    __table_args__ = (UniqueConstraint("notice_id", "version", name="uq_notice_version"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    version: int
    content_hash: str = Field(max_length=64)
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    raw_sha256: Optional[str] = Field(default=None, foreign_key="raw_body.sha256", max_length=64)
    seen_at: datetime = Field(default_factory=utcnow)


SIDE_ROLES = ("origin", "inferred")
"""Finding roles that do not put a notice under their value where notices are filtered, counted,
scored or drafted from: a country a product only comes from (origin) is not a market it was flagged
in, and a hazard inferred from the product category (inferred) is a likely hazard, not what the notice
says. The notice page shows both, labelled."""


def counted_role_sql(alias: str = "c") -> str:
    """SQL: the finding `alias` has no side role (see SIDE_ROLES)."""
    roles = ", ".join(f"'{r}'" for r in SIDE_ROLES)
    return f"({alias}.role IS NULL OR {alias}.role NOT IN ({roles}))"


class Classification(SQLModel, table=True):
    """One finding of the NLP stage about one notice version, with the evidence that justified it."""

    __tablename__ = "classification"
    # Its search indexes, (axis, value, notice_id, role) and (notice_id, axis, value, role), are made by
    # hand in migration 0004: on PostgreSQL the value is indexed in the "C" collation.

    id: Optional[int] = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id")
    notice_version: int
    axis: str = Field(max_length=40)
    value: str = Field(max_length=200)
    score: float = 1.0
    method: str = Field(max_length=20)  # source_label or text
    field: str = Field(default="", max_length=40)
    evidence: str = Field(default="", sa_column=Column(Text, nullable=False))
    start: Optional[int] = None
    end: Optional[int] = None
    role: Optional[str] = Field(default=None, max_length=40)
    pipeline_version: str = Field(max_length=40)


# -- the radar: incidents, signals, proposals, impact, review ----------------------------------------


class Incident(SQLModel, table=True):
    """Notices from different sources about the same product or event."""

    __tablename__ = "incident"

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # what linked them: gtin:…, brand-model:…, text:…
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    method: str = Field(max_length=20)  # gtin, brand_model, text
    confidence: float = 1.0
    confirmed_by: Optional[str] = Field(default=None, max_length=100)  # a person who confirmed or split it
    created_at: datetime = Field(default_factory=utcnow)


class IncidentMember(SQLModel, table=True):
    __tablename__ = "incident_member"
    __table_args__ = (UniqueConstraint("incident_id", "notice_id", name="uq_incident_member"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    confidence: float = 1.0
    method: str = Field(max_length=20)


class Signal(SQLModel, table=True):
    """Something the radar noticed: a spike, a new law, a date that matters. Says why and on what."""

    __tablename__ = "signal"

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)  # kind + scope + period: re-running never duplicates
    kind: str = Field(max_length=30, index=True)  # spike, legislation, deadline, incident
    week: str = Field(max_length=10, index=True)  # ISO week, e.g. 2026-W47
    category: Optional[str] = Field(default=None, max_length=200)
    hazard: Optional[str] = Field(default=None, max_length=200)
    jurisdiction: Optional[str] = Field(default=None, max_length=200)
    count: int = 0
    baseline: Optional[float] = None
    score: float = 0.0  # ranking strength; its meaning per kind is in `reason`
    due: Optional[date] = None  # for deadlines and effective dates
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    notice_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Proposal(SQLModel, table=True):
    """A drafted change to config/policy_rules.yml: a unified diff with its rationale and evidence."""

    __tablename__ = "proposal"

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)  # what it proposes, so drafting twice stores it once
    kind: str = Field(max_length=30)  # new_rule, widen_markets, widen_categories, add_terms, change_action
    rule_id: str = Field(max_length=200, index=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    rationale: str = Field(default="", sa_column=Column(Text, nullable=False))
    diff: str = Field(default="", sa_column=Column(Text, nullable=False))
    rule: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the proposed rule
    base_hash: str = Field(max_length=64)  # sha256 of the policy file the diff was drafted against
    evidence_notice_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    signal_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=20, index=True)  # pending, accepted, rejected, stale
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ImpactEstimate(SQLModel, table=True):
    """How many listings of a catalogue a proposal would hit, and how many of those are already hit."""

    __tablename__ = "impact_estimate"

    id: Optional[int] = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    catalogue: str = Field(sa_column=Column(Text, nullable=False))
    listings_scanned: int = 0
    hits: int = 0
    already_hit: int = 0
    newly_hit: int = 0
    exact: bool = True
    method: str = Field(default="exact", sa_column=Column(Text, nullable=False))
    hits_low: Optional[float] = None
    hits_high: Optional[float] = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Review(SQLModel, table=True):
    """A person's decision on a proposal: the audit trail of the listing policy."""

    __tablename__ = "review"

    id: Optional[int] = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    reviewer: str = Field(max_length=100)
    decision: str = Field(max_length=20)  # accept, edit, reject
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    edited_rule: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))
    policy_hash_before: Optional[str] = Field(default=None, max_length=64)
    policy_hash_after: Optional[str] = Field(default=None, max_length=64)
    impact_estimate_id: Optional[int] = Field(default=None, foreign_key="impact_estimate.id")
    created_at: datetime = Field(default_factory=utcnow)


# -- people, subscriptions, digests -------------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "radar_user"

    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    email: str = Field(default="", max_length=300)
    password_hash: str = Field(max_length=300)
    role: str = Field(default="viewer", max_length=20)  # viewer, reviewer, admin
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: Optional[datetime] = None  # the last web login (an API call with a password is not one)


class Subscription(SQLModel, table=True):
    """Who gets the weekly digest, for which markets and categories, from which severity, in which language."""

    __tablename__ = "subscription"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    recipients: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    markets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    min_severity: str = Field(default="medium", max_length=20)
    language: str = Field(default="en", max_length=10)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class DigestDelivery(SQLModel, table=True):
    """One digest email for one week, subscription and recipient: sent exactly once, retried on failure."""

    __tablename__ = "digest_delivery"
    __table_args__ = (UniqueConstraint("week", "subscription_id", "recipient", name="uq_digest_delivery"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    week: str = Field(max_length=10, index=True)
    subscription_id: int = Field(foreign_key="subscription.id", index=True)
    recipient: str = Field(max_length=300)
    status: str = Field(default="pending", max_length=20)  # pending, sending, sent, failed
    attempts: int = 0
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))
    message_id: Optional[str] = Field(default=None, max_length=300)
    sent_at: Optional[datetime] = None
    created_at: datetime = Field(default_factory=utcnow)


class SavedSearch(SQLModel, table=True):
    __tablename__ = "saved_search"

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="radar_user.id", index=True)
    name: str = Field(max_length=200)
    query: str = Field(default="", sa_column=Column(Text, nullable=False))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    follow: bool = False  # send new matches by email
    last_notified_at: Optional[datetime] = None
    created_at: datetime = Field(default_factory=utcnow)


# -- operation: crawl state and job runs ------------------------------------------------------------------


class HttpValidator(SQLModel, table=True):
    """The ETag / Last-Modified a URL last answered with, for conditional re-crawls."""

    __tablename__ = "http_validator"

    url: str = Field(sa_column=Column(Text, primary_key=True))
    source: str = Field(max_length=100, index=True)
    etag: Optional[str] = Field(default=None, max_length=300)
    last_modified: Optional[str] = Field(default=None, max_length=100)
    body_sha256: Optional[str] = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow)


class JobRun(SQLModel, table=True):
    """One run of a scheduled or manual job, with the id that appears in its log lines."""

    __tablename__ = "job_run"

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=40, unique=True)
    job: str = Field(max_length=100, index=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None
    status: str = Field(default="running", max_length=20)  # running, ok, failed, timeout, abandoned
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    host: str = Field(default="", max_length=200)
