"""The classify stage: run the NLP pipeline over notices whose current version has no findings yet."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from radar.models import Classification, Notice
from radar.search import refresh_facet_keys

log = logging.getLogger(__name__)


@dataclass
class ClassifyResult:
    notices: int = 0
    findings: int = 0
    unmapped: Counter = field(default_factory=Counter)


def pending_count(engine: Engine, reclassify_all: bool = False) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(Notice)
        if not reclassify_all:
            query = query.where(Notice.classified_version != Notice.version)
        return session.exec(query).one()


def classify_pending(engine: Engine, classifier=None, *, reclassify_all: bool = False, batch_size: int = 500,
                     progress: Callable[[int], None] | None = None) -> ClassifyResult:
    """Classify every notice not yet classified at its current version (or all); safe to re-run.

    Each batch replaces the notice's findings in one transaction, so an interrupted run leaves every
    notice either with its old findings or its new ones, and the next run picks up where it stopped.
    """
    from nlp.pipeline import PIPELINE_VERSION, Classifier

    classifier = classifier or Classifier.load()
    result = ClassifyResult()
    last_id = 0
    while True:
        with Session(engine, expire_on_commit=False) as session:
            query = select(Notice).where(Notice.id > last_id).order_by(Notice.id).limit(batch_size)
            if not reclassify_all:
                query = query.where(Notice.classified_version != Notice.version)
            notices = list(session.exec(query))
            if not notices:
                break
            last_id = notices[-1].id
            ids = [n.id for n in notices]
            session.exec(delete(Classification).where(Classification.notice_id.in_(ids)))
            version = getattr(classifier, "version", PIPELINE_VERSION)[:40]
            rows = []
            for notice, findings in zip(notices, classifier.classify_many(notices)):
                for f in findings:
                    rows.append({
                        "notice_id": notice.id, "notice_version": notice.version, "axis": f.axis, "value": f.value,
                        "score": f.score, "method": f.method, "field": f.field or "", "evidence": (f.evidence or "")[:2000],
                        "start": f.start, "end": f.end, "role": f.role, "pipeline_version": version,
                    })
            # Core inserts and one UPDATE per version: the ORM's per-object bookkeeping would dominate here.
            if rows:
                session.execute(insert(Classification), rows)
            refresh_facet_keys(session.connection(), ids)
            by_version: dict[int, list[int]] = {}
            for notice in notices:
                by_version.setdefault(notice.version, []).append(notice.id)
            for notice_version, notice_ids in by_version.items():
                session.execute(update(Notice).where(Notice.id.in_(notice_ids)).values(classified_version=notice_version))
            session.commit()
            result.notices += len(notices)
            result.findings += len(rows)
            if progress:
                progress(len(notices))
    result.unmapped = Counter(getattr(classifier, "unmapped", Counter()))
    for (source, axis, label), count in result.unmapped.most_common(20):
        log.info("%s: %s label %r has no taxonomy mapping (%d notices)", source, axis, label, count)
    return result
