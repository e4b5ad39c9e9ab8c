"""Storing notices: content-addressed raw bodies, one current row per notice, every version kept."""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import tuple_
from sqlmodel import Session, select

from crawlers.items import NoticeItem
from radar.models import Notice, NoticeVersion, RawBody, utcnow

log = logging.getLogger(__name__)

NOTICE_FIELDS = (
    "url", "title", "text", "published", "updated", "effective_date", "comment_deadline", "language",
    "product_name", "brand", "model", "gtin", "batch", "category_labels", "risk_labels", "country_labels",
    "labels",
)


@dataclass
class StoreResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    notice_ids: list[int] = field(default_factory=list)

    def add(self, other: "StoreResult") -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.notice_ids.extend(other.notice_ids)


def _insert_ignore(session: Session, table, rows: list[dict]) -> None:
    """INSERT … ON CONFLICT DO NOTHING in the session's dialect: concurrent writers of the same row both succeed."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(dialect)
    session.execute(insert(table).on_conflict_do_nothing(), rows)


def store_raw_many(session: Session, bodies: dict[str, tuple[bytes, str]]) -> None:
    """Keep response bodies once per content hash (sha256 → (body, content type)), compressed."""
    if not bodies:
        return
    shas = list(bodies)
    present: set[str] = set()
    for start in range(0, len(shas), 500):
        present.update(session.exec(select(RawBody.sha256).where(RawBody.sha256.in_(shas[start:start + 500]))))
    now = utcnow()
    rows = [
        {"sha256": sha, "content_type": ctype[:200], "size": len(body), "data": zlib.compress(body, 6), "fetched_at": now}
        for sha, (body, ctype) in bodies.items() if sha not in present
    ]
    _insert_ignore(session, RawBody.__table__, rows)


def load_raw(session: Session, sha: str) -> bytes | None:
    row = session.get(RawBody, sha)
    return zlib.decompress(row.data) if row else None


def store_items(session: Session, items: Iterable[NoticeItem]) -> StoreResult:
    """Insert new notices, version edited ones, touch unchanged ones. Safe to call again with the same items."""
    items = list(items)
    result = StoreResult()
    if not items:
        return result
    keys = {(i.source, i.source_id) for i in items}
    existing: dict[tuple[str, str], Notice] = {}
    key_list = list(keys)
    for start in range(0, len(key_list), 500):
        chunk = key_list[start:start + 500]
        rows = session.exec(select(Notice).where(tuple_(Notice.source, Notice.source_id).in_(chunk)))
        for row in rows:
            existing[(row.source, row.source_id)] = row
    # Raw bodies first, in one round trip: many notices usually share one response.
    raw_for: list[str | None] = []
    bodies: dict[str, tuple[bytes, str]] = {}
    digests: dict[int, str] = {}
    for item in items:
        if not item.raw_body:
            raw_for.append(None)
            continue
        key = id(item.raw_body)
        if key not in digests:
            digests[key] = hashlib.sha256(item.raw_body).hexdigest()
        sha = digests[key]
        bodies.setdefault(sha, (item.raw_body, item.raw_content_type))
        raw_for.append(sha)
    store_raw_many(session, bodies)

    now = utcnow()
    versions: list[tuple[Notice, int, str, dict, str | None]] = []
    for item, raw_sha in zip(items, raw_for):
        content_hash = item.content_hash()
        values = {name: getattr(item, name) for name in NOTICE_FIELDS}
        notice = existing.get((item.source, item.source_id))
        if notice is None:
            notice = Notice(source=item.source, source_id=item.source_id, version=1, content_hash=content_hash,
                            raw_sha256=raw_sha, first_seen=now, last_seen=now, **values)
            session.add(notice)
            existing[(item.source, item.source_id)] = notice
            versions.append((notice, notice.version, content_hash, item.content_fields(), raw_sha))
            result.new += 1
        elif notice.content_hash == content_hash:
            notice.last_seen = now
            result.unchanged += 1
        else:
            notice.version += 1
            for name, value in values.items():
                setattr(notice, name, value)
            notice.content_hash = content_hash
            notice.raw_sha256 = raw_sha
            notice.last_seen = now
            versions.append((notice, notice.version, content_hash, item.content_fields(), raw_sha))
            log.info("%s: notice %s edited by the source, stored as version %d", item.source, item.source_id, notice.version)
            result.updated += 1
    # One flush assigns every new notice its id (SQLAlchemy batches the INSERTs), then the versions follow.
    session.flush()
    if versions:
        session.execute(NoticeVersion.__table__.insert(), [
            {"notice_id": n.id, "version": version, "content_hash": content_hash, "fields": fields,
             "raw_sha256": raw_sha, "seen_at": now}
            for n, version, content_hash, fields, raw_sha in versions
        ])
    result.notice_ids.extend(existing[(i.source, i.source_id)].id for i in items)
    session.flush()
    return result
