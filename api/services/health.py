"""Readiness: whether this worker can serve and log, and what it is serving in a degraded way."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, text

from api.migrate import migration_state

__all__ = ["degradations", "readiness"]


def degradations(state: Any) -> list[str]:
    """What this worker serves in a degraded way, in plain words (empty: nothing).

    Parameters
    ----------
    state : AppState
        The worker's state: its posterior cache, group writer and background refresher.
    """
    problems: list[str] = []
    now = time.time()
    posterior = state.posterior
    if posterior.served is None and state.settings.policy != "list":
        problems.append(
            "no demand model loaded: quotes get list prices, flagged fallback"
            if not posterior.failed else "the demand model could not be loaded: quotes get list "
            "prices, flagged fallback"
        )  # fmt: skip
    if posterior.failed is not None:
        snapshot, since, error = posterior.failed
        serving = posterior.served
        keeping = f"still serving snapshot {serving.snapshot_id}" if serving else "list prices"
        problems.append(
            f"demand snapshot {snapshot} could not be loaded ({error}); {keeping} "
            f"({now - since:.0f} s)"
        )
    writer = state.writer
    if writer.unavailable_since is not None:
        problems.append(
            f"the decision log cannot be written ({writer.last_error}) for "
            f"{now - writer.unavailable_since:.0f} s: quotes and outcomes are refused (retry later)"
        )
    refresher = state.refresher
    if refresher is not None:
        for name, (since, error) in sorted(refresher.failing.items()):
            problems.append(
                f"background refresh {name} failing for {now - since:.0f} s ({error}); serving "
                "the last values read"
            )
    return problems


def readiness(engine: Engine, state: Any | None = None) -> tuple[bool, dict[str, Any]]:
    """Check the database and the worker's state; never raises.

    Returns
    -------
    ready : bool
        True when the database answers and no migration is pending (a worker that is
        degraded but can log its decisions is ready).
    report : dict
        ``status`` (``"ready"``, ``"degraded"`` or ``"unavailable"``), the migration state
        or the database error (first 200 characters), and ``degraded``: the list of what
        is served in a degraded way.
    """
    problems = degradations(state) if state is not None else []
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        migrations = migration_state(engine)
    except Exception as exc:  # any database failure means "not ready", never a 500
        return False, {"status": "unavailable", "database": str(exc)[:200], "degraded": problems}
    if not migrations.up_to_date:
        return False, {"status": "unavailable", "migrations": migrations.describe(),
                       "degraded": problems}  # fmt: skip
    status = "degraded" if problems else "ready"
    return True, {"status": status, "migrations": migrations.describe(), "degraded": problems}
