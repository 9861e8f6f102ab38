"""A value read from the database and kept for a short time, safe on the quote path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

__all__ = ["TTLCache"]

T = TypeVar("T")


class TTLCache(Generic[T]):
    """``load(session)``, re-read at most every ``ttl`` seconds.

    In the API the worker's refresher thread calls :meth:`refresh` and marks the cache
    ``background``: :meth:`get` then never reads the database. Without a refresher (a
    simulation, a test), :meth:`get` refreshes a stale value itself, but never makes a
    caller wait: the thread that takes the refresh reads while the others keep the current
    value (waiting could deadlock the pool). The first load does block (there is no value
    to serve yet); the app warms its caches before serving.
    """

    def __init__(
        self, sessions: sessionmaker[Session], load: Callable[[Session], T], ttl: float = 1.0
    ) -> None:
        self._sessions = sessions
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._value: T | None = None
        self._loaded = False
        #: Set when a background thread refreshes the value: :meth:`get` never reads.
        self.background = False

    def invalidate(self) -> None:
        """Re-read now (after a change made by this worker: the caller pays the read)."""
        self._loaded_at = -1e9
        if self.background:
            with self._lock:
                self._reload()

    def refresh(self) -> None:
        """Re-read if older than ``ttl`` (the refresher's job)."""
        if time.monotonic() - self._loaded_at >= self._ttl:
            with self._lock:
                self._reload()

    def _reload(self) -> None:
        with self._sessions() as session:
            value = self._load(session)
        # Keep the same object when nothing changed: consumers key their own caches on
        # its identity (the policy's price ladders, the anchors' reference prices).
        if not (self._loaded and value == self._value):
            self._value = value
        self._loaded = True
        self._loaded_at = time.monotonic()

    def get(self) -> T:
        """The value, refreshed when older than ``ttl``."""
        if self._loaded and (self.background or time.monotonic() - self._loaded_at < self._ttl):
            return self._value  # type: ignore[return-value]
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._reload()
            return self._value  # type: ignore[return-value]
        if self._lock.acquire(blocking=False):
            try:
                if time.monotonic() - self._loaded_at >= self._ttl:
                    self._reload()
            finally:
                self._lock.release()
        return self._value  # type: ignore[return-value]
