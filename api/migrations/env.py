"""Alembic environment: runs migrations on the connection handed in by api.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from api.migrate import include_object
from api.orm import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on ``config.attributes['connection']`` or on the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run pricing-engine migrate"
    )
run_migrations_online()
