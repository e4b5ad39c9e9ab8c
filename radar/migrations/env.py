"""Alembic environment: runs on the connection radar.db hands over, or on RADAR_DATABASE_URL."""

from alembic import context
from sqlmodel import SQLModel

import radar.models  # noqa: F401 - registers the tables on SQLModel.metadata
from radar.db import include_object

config = context.config
target_metadata = SQLModel.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from radar.db import make_engine

        engine = config.attributes.get("engine") or make_engine()
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True,
                              include_object=include_object)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                              include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


run()
