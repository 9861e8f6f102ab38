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
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.orm import utcnow
from api.services.raw_sql import RawSQL

__all__ = ["Refresher", "recent_outcomes"]

log = logging.getLogger("pricing.refresher")


def recent_outcomes(session: Session, since: datetime) -> list[Any]:
    """Decision ids of outcomes recorded at or after ``since``, as the driver returns them
    (hex text on SQLite, UUIDs on PostgreSQL: :class:`~api.services.raw_sql.RawSQL`),
    read on the driver (the index on ``recorded_at`` serves it)."""
    raw = RawSQL.of(session)
    cursor = session.connection().connection.cursor()
    try:
        mark = "%s" if raw.postgres else "?"
        cursor.execute(f"SELECT decision_id FROM outcomes WHERE recorded_at >= {mark}",
                       (raw.timestamp(since),))  # fmt: skip
        return [decision for (decision,) in cursor.fetchall()]
    finally:
        cursor.close()


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
    """Outcomes recorded since the last pass (any worker's), handed to ``mark``.

    Each pass reads back ``overlap`` seconds before the previous one (an outcome's
    ``recorded_at`` is stamped before its transaction commits); ids already handed on in
    that window are skipped, so each outcome is converted and handed on once however often
    it is read. Ids are handed on as their 128-bit integers (the sticky map's keys): hex
    text becomes one with ``int(text, 16)``, several times cheaper than a ``uuid.UUID``
    (0.1 against 1.0 µs an outcome timed alone; about 2 µs in the worker during batch
    ingestion, 2026-12-07).
    """

    def __init__(
        self, sessions: sessionmaker[Session], mark: Callable[[list[int]], None],
        overlap: float = 2.0,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._mark = mark
        self._overlap = timedelta(seconds=overlap)
        self._since = utcnow()
        #: Driver keys the previous pass read (an outcome stays in the window from pass
        #: to pass until it leaves it for good).
        self._seen: set[Any] = set()

    def __call__(self) -> None:
        now = utcnow()
        with self._sessions() as session:
            keys = recent_outcomes(session, self._since - self._overlap)
        self._since = now
        fresh = [k for k in keys if k not in self._seen]
        self._seen = set(keys)
        if fresh:
            self._mark([k.int if isinstance(k, uuid.UUID) else int(k, 16) for k in fresh])
