"""search indexes: covering indexes on classification, and the result order on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

A search filter ("category cat.toys or below") is a range seek on (axis, value) that yields notice ids;
a facet count or an EXISTS probe reads one notice's findings by notice_id. Both are answered from the
index alone when it holds every column they read (axis, value, notice_id, role), so 1,000,000 notices
and their findings are searched without touching classification rows. These replace the two narrower
indexes (axis, value) and (notice_id), which they serve as well.

On PostgreSQL the value column gets the "C" collation (bytes), whatever the database's collation, so
the range means the same as on SQLite and the planner's statistics are kept in the order the queries
compare in (a COLLATE in the query alone leaves it guessing); and notice gets an index in the result
order (published DESC NULLS LAST, id DESC), so the first page of a search without words stops after
one page. SQLite's index on (published) already gives that order walked backwards (NULLs sort first).

These indexes are dialect-specific, so they are made here by hand (see radar.db.HAND_MADE).
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute('ALTER TABLE classification ALTER COLUMN value TYPE VARCHAR(200) COLLATE "C"')
    op.execute("CREATE INDEX ix_classification_axis_value_notice ON classification (axis, value, notice_id, role)")
    op.execute("CREATE INDEX ix_classification_notice_axis_value ON classification (notice_id, axis, value, role)")
    op.execute("DROP INDEX ix_classification_axis_value")
    op.execute("DROP INDEX ix_classification_notice_id")
    if dialect == "postgresql":
        op.execute("CREATE INDEX ix_notice_published_order ON notice (published DESC NULLS LAST, id DESC)")
        # A sample of the archive (estimated totals, facet counts) reads ranges of ids and these columns
        # only: an index-only scan instead of fetching wide notice rows from the heap.
        op.execute("CREATE INDEX ix_notice_sample ON notice (id) INCLUDE (source, published, gtin)")
    op.execute("ANALYZE classification" if dialect == "postgresql" else "ANALYZE")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("CREATE INDEX ix_classification_notice_id ON classification (notice_id)")
    op.execute("CREATE INDEX ix_classification_axis_value ON classification (axis, value)")
    op.execute("DROP INDEX ix_classification_notice_axis_value")
    op.execute("DROP INDEX ix_classification_axis_value_notice")
    if dialect == "postgresql":
        op.execute("DROP INDEX ix_notice_published_order")
        op.execute("DROP INDEX ix_notice_sample")
        op.execute("ALTER TABLE classification ALTER COLUMN value TYPE VARCHAR(200) COLLATE \"default\"")
