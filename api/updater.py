"""The in-process updater of the embedded SQLite default: the queue's jobs on a timer.

``pricing-engine worker`` runs it when the database is SQLite (on PostgreSQL the same job
functions, :mod:`api.jobs`, run as tasks of the procrastinate queue, :mod:`api.queue`).
Each pass applies new outcomes to the serving snapshot's weights, then refits if due
(:func:`api.jobs.refit_reason`: first data, low ESS, an old snapshot). It runs in its own
process, never in an API worker: a refit loads PyMC and takes the CPU for minutes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from api.jobs import JobRuntime, apply_outcomes, refit_if_due
from api.jobs import refit_reason as _refit_reason
from api.services.demand_models import RefitResult, UpdateResult

__all__ = ["Updater", "UpdaterProcess"]

log = logging.getLogger("pricing.updater")


@dataclass
class Updater(JobRuntime):
    """One updater loop: the jobs' runtime (:class:`api.jobs.JobRuntime`) on a timer.

    Parameters
    ----------
    sessions, ess_fraction, refit_every, min_outcomes, sampler_config, missing_outcome
        As for :class:`~api.jobs.JobRuntime`.
    interval : float
        Seconds between update passes; a rejected or failed refit is retried after
        ``max(60, 30 * interval)`` seconds.
    """

    interval: float = 2.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    last_refit_failure: str | None = None
    _failed_at: float | None = None

    def __post_init__(self) -> None:
        self.retry_after = timedelta(seconds=max(60.0, self.interval * 30))

    def refit_reason(self) -> str | None:
        """Why a refit is due now, or None."""
        return _refit_reason(self)

    def step(self) -> tuple[UpdateResult, RefitResult | None]:
        """Apply new outcomes, then refit if due."""
        update = apply_outcomes(self)
        backoff = self.retry_after.total_seconds()
        if self._failed_at is not None and time.monotonic() - self._failed_at < backoff:
            return update, None  # a refit just raised: do not retry on every pass
        result = None
        try:
            result = refit_if_due(self)
            if result is not None:
                self.last_refit_failure = None if result.published else result.message
                self._failed_at = None
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

    def stop_soon(self) -> None:
        """Ask the loop to end after the current pass (from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)



class UpdaterProcess:
    """``pricing-engine worker`` as a child process of the API (``serve --updater``).

    The child gets the parent's settings through the environment. The API process only
    starts and stops it: it never imports PyMC nor runs a job.

    Parameters
    ----------
    settings : Settings
        Passed to the child (every field as its ``PRICING_*`` variable).
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The child's environment: this one plus every setting."""
        from api.settings import ENV_PREFIX

        env = dict(os.environ)
        for name, value in self.settings.model_dump().items():
            if value is None or name == "run_updater":
                continue
            env[f"{ENV_PREFIX}{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return env

    def start(self) -> None:
        """Start the worker process."""
        command = [sys.executable, "-m", "api.cli", "worker"]
        self.process = subprocess.Popen(command, env=self.environment())
        log.info("updater process %d started", self.process.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
