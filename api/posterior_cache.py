"""The API worker's read-only copy of the serving posterior, hot-swapped when it changes.

A background thread polls the id and weight sequence of the newest published snapshot
(one indexed query); when either moves, it loads the new draws or weights and swaps a
single reference. Requests read that reference and never wait for a load, so a swap
neither restarts the worker nor fails a request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.orm import ModelSnapshot
from api.services.demand_models import PUBLISHED, load_posterior
from pricing.posterior import DemandPosterior

__all__ = ["PosteriorCache", "Served"]

log = logging.getLogger("pricing.posterior")

#: A snapshot that failed to load is tried again after this long (s).
RETRY_FAILED_SECONDS = 60.0


@dataclass(frozen=True)
class Served:
    """The posterior being served and where it came from."""

    snapshot_id: int
    weights_seq: int
    posterior: DemandPosterior


class PosteriorCache:
    """Holds the current :class:`Served` posterior and refreshes it from the database.

    Parameters
    ----------
    sessions : sessionmaker
        Database sessions.
    poll_seconds : float
        Interval of the background refresh.
    """

    def __init__(self, sessions: sessionmaker[Session], poll_seconds: float = 1.0) -> None:
        self._sessions = sessions
        self._poll = poll_seconds
        self._served: Served | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: The newest published snapshot that could not be loaded: (id, when, error).
        self.failed: tuple[int, float, str] | None = None
        #: Whether any snapshot has been published (False: list prices, flagged fallback).
        self.published = False

    @property
    def served(self) -> Served | None:
        """The current posterior, or None before the first published fit."""
        return self._served

    def refresh(self) -> bool:
        """Load a newer snapshot or newer weights if there are any; True when swapped."""
        with self._lock, self._sessions() as session:
            head = session.execute(
                select(ModelSnapshot.id, ModelSnapshot.weights_seq)
                .where(ModelSnapshot.status == PUBLISHED)
                .order_by(ModelSnapshot.id.desc())
                .limit(1)
            ).first()
            if head is None:
                self.published = False
                return False
            self.published = True
            snapshot_id, seq = head
            current = self._served
            if current is not None and (current.snapshot_id, current.weights_seq) == (
                snapshot_id,
                seq,
            ):
                return False
            if current is not None and current.snapshot_id == snapshot_id:
                weights_row = session.execute(
                    select(ModelSnapshot.log_weights, ModelSnapshot.block_log_weights,
                           ModelSnapshot.weights_seq).where(
                        ModelSnapshot.id == snapshot_id
                    )
                ).one()
                raw, blocks, seq = weights_row
                if raw is None:
                    return False
                self._served = Served(snapshot_id, seq,
                                      current.posterior.with_stored_weights(raw, blocks))  # fmt: skip
                return True
            failed = self.failed
            if failed is not None and failed[0] == snapshot_id and time.time() - failed[1] < RETRY_FAILED_SECONDS:
                return False  # known bad: keep serving what we have, try again later
            row = session.get(ModelSnapshot, snapshot_id)
            assert row is not None
            try:
                posterior = load_posterior(row)
            except Exception as exc:
                # A corrupt or unreadable snapshot: keep the current posterior (or the
                # list-price fallback) and say so in /readyz.
                self.failed = (snapshot_id, time.time(), f"{type(exc).__name__}: {exc}"[:300])
                log.exception("demand snapshot %s could not be loaded; keeping %s", snapshot_id,
                              f"snapshot {current.snapshot_id}" if current else "list prices")  # fmt: skip
                return False
            self.failed = None
            self._served = Served(snapshot_id, row.weights_seq, posterior)
            log.info("serving demand snapshot %s", snapshot_id)
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a failed refresh keeps serving what we have
                log.exception("posterior refresh failed; keeping the current snapshot")
            self._stop.wait(self._poll)

    def start(self) -> None:
        """Start polling in a daemon thread (after one synchronous refresh)."""
        try:
            self.refresh()
        except Exception:
            log.exception("initial posterior load failed; will retry")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="posterior-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
