"""Readiness: whether this worker's database answers and is at the latest migration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from api.migrate import migration_state

__all__ = ["readiness"]


def readiness(engine: Engine) -> tuple[bool, dict[str, Any]]:
    """Check the database; never raises.

    Returns
    -------
    ready : bool
        True when the database answers and no migration is pending.
    report : dict
        ``status`` (``"ready"`` / ``"unavailable"``) and the migration state, or the
        database error (first 200 characters).
    """
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        migrations = migration_state(engine)
    except Exception as exc:  # any database failure means "not ready", never a 500
        return False, {"status": "unavailable", "database": str(exc)[:200]}
    if not migrations.up_to_date:
        return False, {"status": "unavailable", "migrations": migrations.describe()}
    return True, {"status": "ready", "migrations": migrations.describe()}
