"""full-text search: SQLite FTS5 kept by triggers, PostgreSQL tsvector column with a GIN index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Both index title (weighted higher) and text with no stemming and no diacritic folding, so one query
finds the same notices on either database; radar.search builds the query for each dialect. PostgreSQL's
parser would skip anything that looks like a markup tag, so < and > are blanked first, as FTS5 does.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE notice_fts USING fts5("
            "title, text, content='notice', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        op.execute(
            "CREATE TRIGGER notice_fts_ai AFTER INSERT ON notice BEGIN "
            "INSERT INTO notice_fts(rowid, title, text) VALUES (new.id, new.title, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER notice_fts_ad AFTER DELETE ON notice BEGIN "
            "INSERT INTO notice_fts(notice_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text); END"
        )
        op.execute(
            "CREATE TRIGGER notice_fts_au AFTER UPDATE OF title, text ON notice BEGIN "
            "INSERT INTO notice_fts(notice_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text); "
            "INSERT INTO notice_fts(rowid, title, text) VALUES (new.id, new.title, new.text); END"
        )
        op.execute("INSERT INTO notice_fts(notice_fts) VALUES ('rebuild')")
    elif dialect == "postgresql":
        op.execute(
            "ALTER TABLE notice ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
            "setweight(to_tsvector('simple', translate(coalesce(title, ''), '<>', '  ')), 'A') || "
            "setweight(to_tsvector('simple', translate(coalesce(text, ''), '<>', '  ')), 'B')) STORED"
        )
        op.execute("CREATE INDEX ix_notice_search_vector ON notice USING gin (search_vector)")
    else:
        raise NotImplementedError(f"full-text search is implemented for SQLite and PostgreSQL, not {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("notice_fts_ai", "notice_fts_ad", "notice_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS notice_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_notice_search_vector")
        op.execute("ALTER TABLE notice DROP COLUMN IF EXISTS search_vector")
