"""The updater: online reweighting as outcomes arrive, and full refits when needed.

Runs as ``pricing-engine worker`` or in a background thread of ``serve --updater``.
A refit is triggered when there is data but no published snapshot, when the effective
sample size of the weights falls below ``ess_fraction`` of the draws, or when the
snapshot is older than ``refit_every``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.orm import ModelSnapshot, Outcome, utcnow
from api.services.demand_models import (
    RefitResult,
    UpdateResult,
    apply_new_outcomes,
    current_snapshot,
    refit,
)

__all__ = ["Updater"]

log = logging.getLogger("pricing.updater")


@dataclass
class Updater:
    """One updater loop.

    Parameters
    ----------
    sessions : sessionmaker
        Database sessions.
    interval : float
        Seconds between update passes.
    ess_fraction : float
        Refit when ESS / D drops below this.
    refit_every : timedelta
        Refit when the serving snapshot is older than this.
    min_outcomes : int
        Outcomes needed before the first fit.
    sampler_config : dict
        Passed to the demand model.
    missing_outcome : str
        Label of a decision whose outcome window closed without an outcome.
    """

    sessions: sessionmaker[Session]
    interval: float = 2.0
    ess_fraction: float = 0.5
    refit_every: timedelta = timedelta(hours=6)
    min_outcomes: int = 200
    sampler_config: dict[str, Any] = field(default_factory=dict)
    missing_outcome: str = "non_conversion"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    last_refit_failure: str | None = None
    _failed_at: float | None = None

    def refit_reason(self) -> str | None:
        """Why a refit is due now, or None."""
        with self.sessions() as session:
            head = current_snapshot(session)
            if head is None:
                outcomes = session.scalar(select(func.count()).select_from(Outcome)) or 0
                return (
                    f"no published snapshot and {outcomes} outcomes"
                    if outcomes >= self.min_outcomes
                    else None
                )
            newest_attempt = session.scalar(select(func.max(ModelSnapshot.created_at)))
            draws = _draw_count(head)
            if head.ess is not None and draws and head.ess < self.ess_fraction * draws:
                # Do not retry a failing refit more often than every interval*30 seconds.
                if (
                    newest_attempt is not None
                    and newest_attempt > head.created_at
                    and (utcnow() - newest_attempt < timedelta(seconds=self.interval * 30))
                ):
                    return None
                return f"ESS {head.ess:.0f} below {self.ess_fraction:.0%} of {draws} draws"
            if utcnow() - head.created_at > self.refit_every:
                return f"snapshot {head.id} is older than {self.refit_every}"
        return None

    def step(self) -> tuple[UpdateResult, RefitResult | None]:
        """Apply new outcomes, then refit if due."""
        update = apply_new_outcomes(self.sessions, missing_outcome=self.missing_outcome)
        backoff = max(60.0, self.interval * 30)
        if self._failed_at is not None and time.monotonic() - self._failed_at < backoff:
            return update, None  # a refit just failed: do not retry on every pass
        reason = self.refit_reason()
        result = None
        if reason is not None:
            log.info("refitting: %s", reason)
            try:
                result = refit(
                    self.sessions,
                    sampler_config=self.sampler_config,
                    missing_outcome=self.missing_outcome,
                )
                self.last_refit_failure = None if result.published else result.message
                self._failed_at = None if result.published else time.monotonic()
            except Exception as exc:
                log.exception("refit failed")
                self.last_refit_failure = str(exc)
                self._failed_at = time.monotonic()
        return update, result

    def run_forever(self) -> None:
        """Loop until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("updater step failed; retrying")
            self._stop.wait(self.interval)

    def start(self) -> None:
        """Run in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="updater", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _draw_count(row: ModelSnapshot) -> int:
    return len(row.log_weights) // 8 if row.log_weights else 0
