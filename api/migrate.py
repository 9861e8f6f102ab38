"""Database migrations (Alembic), and the check that refuses to serve an unmigrated database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["MigrationState", "alembic_config", "migration_state", "upgrade"]

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


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (default: the latest)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


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
