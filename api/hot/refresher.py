"""One background thread per worker that keeps the quote path's state fresh.

Every ``interval`` seconds it re-reads what changed: guardrails, context schema, running
experiments, the catalog, promotions and their running totals (and tops up this worker's
leases), the daily price aggregates, and the outcomes recorded since the last pass (to
mark sticky quotes reported); every ``sweep_interval`` it releases expired holds and
leases. A failure is logged and retried on the next pass; requests keep the values they
have and never wait for a refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.orm import Outcome, utcnow

__all__ = ["Refresher", "recent_outcomes"]

log = logging.getLogger("pricing.refresher")


def recent_outcomes(session: Session, since: datetime) -> list[Any]:
    """Decision ids of outcomes recorded at or after ``since`` (indexed on ``recorded_at``;
    a Core read on the session's connection, no ORM result processing)."""
    rows = session.connection().execute(
        select(Outcome.decision_id).where(Outcome.recorded_at >= since)
    )
    return [decision for (decision,) in rows]


class Refresher:
    """Runs ``tasks`` (name → callable) every ``interval`` s in a daemon thread.

    Parameters
    ----------
    tasks : dict of str to callable
        Called in order each pass.
    interval : float
        Seconds between passes.
    """

    def __init__(self, tasks: dict[str, Callable[[], object]], interval: float = 0.5) -> None:
        self.tasks = tasks
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.failures: dict[str, int] = {}
        #: Tasks failing now: name -> (``time.time()`` of the first failure in a row, error).
        self.failing: dict[str, tuple[float, str]] = {}
        self._reported: dict[str, float] = {}

    def run_once(self) -> None:
        """One pass over every task (failures are counted; logged when a task starts
        failing, once a minute while it keeps failing, and when it recovers)."""
        for name, task in self.tasks.items():
            try:
                task()
            except Exception as exc:
                self.failures[name] = self.failures.get(name, 0) + 1
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                now = time.time()
                if name not in self.failing:
                    self.failing[name] = (now, error)
                    self._reported[name] = now
                    log.exception("background refresh %s failed; will retry", name)
                elif now - self._reported.get(name, 0.0) >= 60.0:
                    self._reported[name] = now
                    log.warning("background refresh %s still failing (%s)", name, error)
            else:
                if self.failing.pop(name, None) is not None:
                    log.info("background refresh %s recovered", name)
        self.passes += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def start(self) -> None:
        """Start the thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hot-state-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for the current pass)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


class Every:
    """A task wrapper that runs at most every ``seconds``."""

    def __init__(self, seconds: float, task: Callable[[], object]) -> None:
        self.seconds = seconds
        self.task = task
        self._last = -1e18

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.seconds:
            self._last = now
            self.task()


class OutcomeFeed:
    """Outcomes recorded since the last pass (any worker's), handed to ``mark``."""

    def __init__(self, sessions: sessionmaker[Session], mark: Callable[[list[Any]], None]) -> None:
        self._sessions = sessions
        self._mark = mark
        self._since = utcnow()

    def __call__(self) -> None:
        now = utcnow()
        with self._sessions() as session:
            ids = recent_outcomes(session, self._since - timedelta(seconds=2))
        self._since = now
        if ids:
            self._mark(ids)
