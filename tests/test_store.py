"""Storage: notices, versions, raw bodies and migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, inspect
from sqlmodel import Session, select

from crawlers.items import NoticeItem
from radar.db import current_revision, head_revision, session_scope, upgrade
from radar.models import Notice, NoticeVersion, RawBody
from radar.store import load_raw, store_items


def _item(source_id="A12/001/24", text="Magnetic toy with small magnets.", **kw) -> NoticeItem:
    values = dict(source="eu_safety_gate_alerts", source_id=source_id, url=f"https://example.org/{source_id}",
                  title="Magnetic building set", text=text, published=date(2024, 3, 1),
                  category_labels=["Toys"], risk_labels=["Choking", "Injuries"], country_labels=["Germany"],
                  labels={"notifying_country": "Germany"}, raw_body=b"<xml>raw " + source_id.encode() + b"</xml>",
                  raw_content_type="application/xml")
    values.update(kw)
    return NoticeItem(**values)


def test_schema_is_at_the_newest_migration(engine):
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"notice", "notice_version", "raw_body", "classification", "source_run"} <= tables
    upgrade(engine)  # a second upgrade is a no-op, not an error
    assert current_revision(engine) == head_revision()


def test_store_new_then_unchanged_then_edited(engine):
    with session_scope(engine) as session:
        first = store_items(session, [_item(), _item("A12/002/24")])
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)

    with session_scope(engine) as session:
        again = store_items(session, [_item(), _item("A12/002/24")])
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)

    with session_scope(engine) as session:
        edited = store_items(session, [_item(text="Magnetic toy; the magnets detach. Recall ordered.")])
    assert (edited.new, edited.updated, edited.unchanged) == (0, 1, 0)

    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Notice)).one() == 2
        notice = session.exec(select(Notice).where(Notice.source_id == "A12/001/24")).one()
        assert notice.version == 2
        assert notice.text.startswith("Magnetic toy; the magnets detach")
        versions = session.exec(select(NoticeVersion).where(NoticeVersion.notice_id == notice.id).order_by(NoticeVersion.version)).all()
        assert [v.version for v in versions] == [1, 2]
        assert versions[0].fields["text"] == "Magnetic toy with small magnets."  # the old text is kept
        assert versions[1].fields["text"].endswith("Recall ordered.")
        assert notice.labels == {"notifying_country": "Germany"}
        assert notice.risk_labels == ["Choking", "Injuries"]


def test_raw_bodies_are_content_addressed_and_compressed(engine):
    shared = b"<feed>" + b"x" * 5000 + b"</feed>"
    with session_scope(engine) as session:
        store_items(session, [_item("a", raw_body=shared), _item("b", raw_body=shared)])
    with Session(engine) as session:
        rows = session.exec(select(RawBody)).all()
        assert len(rows) == 1
        assert rows[0].size == len(shared) and len(rows[0].data) < len(shared) // 10
        notices = session.exec(select(Notice)).all()
        assert {n.raw_sha256 for n in notices} == {rows[0].sha256}
        assert load_raw(session, rows[0].sha256) == shared


def test_same_notice_twice_in_one_batch_is_stored_once(engine):
    with session_scope(engine) as session:
        result = store_items(session, [_item(), _item()])
    assert result.new == 1 and result.unchanged == 1
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(NoticeVersion)).one() == 1


def test_failed_batch_leaves_earlier_notices_intact(engine):
    with session_scope(engine) as session:
        store_items(session, [_item("kept")])
    try:
        with session_scope(engine) as session:
            store_items(session, [_item("lost")])
            raise RuntimeError("crash half-way")
    except RuntimeError:
        pass
    with Session(engine) as session:
        ids = session.exec(select(Notice.source_id)).all()
    assert ids == ["kept"]


def test_models_and_migrations_agree(engine):
    """Every model change comes with a migration: autogenerate finds nothing left to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import radar.models  # noqa: F401
    from radar.db import include_object

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": include_object})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_new_and_edited_in_one_batch_keeps_both_versions(engine):
    with session_scope(engine) as session:
        result = store_items(session, [_item(), _item(text="Edited before the batch was stored.")])
    assert (result.new, result.updated) == (1, 1)
    with Session(engine) as session:
        versions = session.exec(select(NoticeVersion).order_by(NoticeVersion.version)).all()
    assert [(v.version, v.fields["text"]) for v in versions] == [
        (1, "Magnetic toy with small magnets."), (2, "Edited before the batch was stored.")]
