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

from sqlalchemy.orm import Session, sessionmaker

from api.jobs import JobRuntime, apply_outcomes, refit_if_due
from api.jobs import refit_reason as _refit_reason
from api.services.demand_models import RefitResult, UpdateResult

__all__ = ["Updater", "UpdaterProcess"]

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

    @property
    def runtime(self) -> JobRuntime:
        """The jobs' runtime for this loop's settings."""
        return JobRuntime(
            self.sessions, ess_fraction=self.ess_fraction, refit_every=self.refit_every,
            min_outcomes=self.min_outcomes,
            retry_after=timedelta(seconds=max(60.0, self.interval * 30)),
            sampler_config=self.sampler_config, missing_outcome=self.missing_outcome,
        )  # fmt: skip

    def refit_reason(self) -> str | None:
        """Why a refit is due now, or None."""
        return _refit_reason(self.runtime)

    def step(self) -> tuple[UpdateResult, RefitResult | None]:
        """Apply new outcomes, then refit if due."""
        runtime = self.runtime
        update = apply_outcomes(runtime)
        backoff = runtime.retry_after.total_seconds()
        if self._failed_at is not None and time.monotonic() - self._failed_at < backoff:
            return update, None  # a refit just raised: do not retry on every pass
        result = None
        try:
            result = refit_if_due(runtime)
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
