"""facet keys: each notice's counted findings as full-text tokens, so words and filters meet in one index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

A search with words and a taxonomy filter ("charger" notified by Germany) had to intersect the words'
matches with the filter's notices from the classification table: an id list of tens of thousands or a
probe per match. notice.facet_keys holds the notice's counted findings as tokens (radar.search.facet_keys),
and the full-text index holds them too: on SQLite as a third column of notice_fts, on PostgreSQL as
notice.facet_vector with its own GIN index. The index then intersects words and filters as it
intersects two words.

Existing notices get their keys from their classification rows here; from then on whatever writes
findings refreshes them (radar.search.refresh_facet_keys).
"""
from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FTS_TRIGGERS = ("notice_fts_ai", "notice_fts_ad", "notice_fts_au")


def _fts(columns: tuple[str, ...]) -> None:
    """notice_fts over `columns` of notice, with the triggers that keep it in step, rebuilt."""
    listed = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    op.execute(f"CREATE VIRTUAL TABLE notice_fts USING fts5({listed}, content='notice', content_rowid='id', "
               "tokenize='unicode61 remove_diacritics 0')")
    op.execute(f"CREATE TRIGGER notice_fts_ai AFTER INSERT ON notice BEGIN "
               f"INSERT INTO notice_fts(rowid, {listed}) VALUES (new.id, {new}); END")
    op.execute(f"CREATE TRIGGER notice_fts_ad AFTER DELETE ON notice BEGIN "
               f"INSERT INTO notice_fts(notice_fts, rowid, {listed}) VALUES ('delete', old.id, {old}); END")
    op.execute(f"CREATE TRIGGER notice_fts_au AFTER UPDATE OF {listed} ON notice BEGIN "
               f"INSERT INTO notice_fts(notice_fts, rowid, {listed}) VALUES ('delete', old.id, {old}); "
               f"INSERT INTO notice_fts(rowid, {listed}) VALUES (new.id, {new}); END")
    op.execute("INSERT INTO notice_fts(notice_fts) VALUES ('rebuild')")


def _drop_fts() -> None:
    for trigger in _FTS_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS notice_fts")


def upgrade() -> None:
    from radar.search import refresh_facet_keys

    connection = op.get_bind()
    dialect = connection.dialect.name
    if dialect == "sqlite":
        _drop_fts()  # rebuilt once below, rather than re-indexed per notice as the keys are filled in
    op.execute("ALTER TABLE notice ADD COLUMN facet_keys TEXT DEFAULT '' NOT NULL")
    last = 0
    while True:
        ids = connection.execute(text("SELECT DISTINCT notice_id FROM classification WHERE notice_id > :last "
                                      "ORDER BY notice_id LIMIT 5000"), {"last": last}).scalars().all()
        if not ids:
            break
        refresh_facet_keys(connection, ids)
        last = ids[-1]
    if dialect == "sqlite":
        _fts(("title", "text", "facet_keys"))
    else:
        # array_to_tsvector keeps each key as one lexeme, untouched by any parser or dictionary.
        op.execute("ALTER TABLE notice ADD COLUMN facet_vector tsvector GENERATED ALWAYS AS "
                   "(array_to_tsvector(string_to_array(nullif(facet_keys, ''), ' '))) STORED")
        op.execute("CREATE INDEX ix_notice_facet_vector ON notice USING gin (facet_vector)")
        op.execute("ANALYZE notice")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _drop_fts()
        op.execute("ALTER TABLE notice DROP COLUMN facet_keys")
        _fts(("title", "text"))
    else:
        op.execute("DROP INDEX IF EXISTS ix_notice_facet_vector")
        op.execute("ALTER TABLE notice DROP COLUMN IF EXISTS facet_vector")
        op.execute("ALTER TABLE notice DROP COLUMN facet_keys")
