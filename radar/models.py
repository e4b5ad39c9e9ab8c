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


class Classification(SQLModel, table=True):
    """One finding of the NLP stage about one notice version, with the evidence that justified it."""

    __tablename__ = "classification"
    __table_args__ = (Index("ix_classification_axis_value", "axis", "value"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
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
