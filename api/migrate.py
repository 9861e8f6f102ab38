"""Database migrations (Alembic), and the check that refuses to serve an unmigrated database."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

__all__ = ["MigrationState", "alembic_config", "migration_state", "queue_jobs", "upgrade"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine | None = None) -> Config:
    """Return an Alembic config pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def upgrade(engine: Engine, revision: str = "head") -> bool:
    """Migrate the database behind ``engine`` to ``revision`` (default: the latest).

    On PostgreSQL this also installs the job queue's schema when it is missing
    (:func:`ensure_queue_schema`); returns True when it did.
    """
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return ensure_queue_schema(engine)


#: A table of the job queue's schema (procrastinate): present once it is installed.
QUEUE_TABLE = "procrastinate_jobs"


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter: the job queue's tables belong to procrastinate, not to our models."""
    del reflected, compare_to
    table = getattr(obj, "table", None)
    owner = table.name if table is not None and type_ != "table" else name
    return not (owner or "").startswith("procrastinate_")


def ensure_queue_schema(engine: Engine) -> bool:
    """Install the job queue's schema (procrastinate's) into a PostgreSQL database lacking it.

    Returns True when it was installed now; False when it was there already or the
    database is SQLite (which runs the jobs in-process and has no queue). The schema is
    that of the installed procrastinate; upgrading procrastinate to a release with schema
    changes means applying its migrations (``procrastinate schema --migrations``).
    """
    if engine.dialect.name != "postgresql":
        return False
    from procrastinate.schema import SchemaManager

    with engine.begin() as connection:
        # One installer at a time (two workers migrating at start-up).
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7291)")
        if inspect(connection).has_table(QUEUE_TABLE):
            return False
        # Through the driver's cursor without parameters: the SQL holds literal % signs.
        cursor = connection.connection.cursor()
        cursor.execute(SchemaManager.get_schema())
        cursor.close()
    return True


class MigrationState:
    """Where a database stands against the packaged migrations.

    Attributes
    ----------
    current : str or None
        Revision recorded in the database (None when never migrated).
    head : str
        Latest packaged revision.
    """

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head

    @property
    def up_to_date(self) -> bool:
        """True when the database is at the latest revision."""
        return self.current == self.head

    def describe(self) -> str:
        """Human-readable status, naming the fix when out of date."""
        if self.up_to_date:
            return f"database at revision {self.head}"
        current = self.current or "none (empty database)"
        return (
            f"database at revision {current}, code expects {self.head}: "
            "run `pricing-engine migrate` first"
        )


def migration_state(engine: Engine) -> MigrationState:
    """Read the database's current revision and the packaged head."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations packaged")
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return MigrationState(current, head)


def queue_jobs(
    session: Any, tasks: Sequence[str], statuses: Sequence[str], *, limit: int = 200,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """The task queue's jobs of ``tasks`` in ``statuses`` (PostgreSQL; none elsewhere or
    before the queue's tables exist): id, task, status, attempts, arguments, and when their
    last event happened (``since``), for pages that follow long operations."""
    from sqlalchemy import bindparam, inspect, text

    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or not inspect(bind).has_table(QUEUE_TABLE):
        return []
    statement = text(
        f"SELECT j.id, j.task_name, j.status, j.attempts, j.args, (SELECT max(e.at) FROM "
        f"procrastinate_events e WHERE e.job_id = j.id) FROM {QUEUE_TABLE} j "
        "WHERE j.task_name IN :tasks AND j.status IN :statuses "
        f"ORDER BY j.id {'DESC' if newest_first else 'ASC'} LIMIT :n"
    ).bindparams(bindparam("tasks", expanding=True), bindparam("statuses", expanding=True))
    rows = session.execute(statement, {"tasks": list(tasks), "statuses": list(statuses), "n": limit})
    return [{"id": r[0], "task": r[1], "status": r[2], "attempts": r[3], "args": r[4] or {},
             "since": r[5]} for r in rows]  # fmt: skip
