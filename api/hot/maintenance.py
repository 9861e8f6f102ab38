"""The worker's background writes, through its group writer.

The refresher thread keeps the database tidy: it closes expired promotion leases, releases
holds past their outcome deadline, and purges expired idempotency keys and old erasure
notices. Each of these used to open a write transaction of its own in the API process,
every second for the sweep. On SQLite that transaction took the write lock from the
worker's writer process, whose next commit then slept in SQLite's busy handler (1, 2, 5,
10 ... ms steps) until the lock came back: measured 2026-12-08 at 1,100 quotes/s, one
commit in the writer process of 10-35 ms about every second, next to the sweep, and
the quotes waiting on it (p99 27.6 ms, p50 2.0).

Now each task first asks a read-only session whether it has anything to do (indexed
reads, no lock; usually it has not), and if so hands its statements to the group writer
as a :class:`MaintenanceJob`. The writer runs them inside its next transaction, in turn
with the quotes, so nothing waits for a lock and nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session, sessionmaker

from api.orm import utcnow

__all__ = ["MaintenanceJob", "WriterTask"]


class MaintenanceJob:
    """A group-writer job that runs ``task(session, now, *args)`` inside the writer's
    transaction; its result is the task's return value.

    ``task`` must be a module-level function (a writer process receives the job pickled,
    and a function pickles by its name) and ``args`` plain values.
    """

    kind: ClassVar[str] = "maintenance"
    rows = 1

    def __init__(self, task: Callable[..., Any], now: datetime, *args: Any) -> None:
        self.task, self.now, self.args = task, now, args
        self.value: Any = None

    @classmethod
    def write_batch(cls, session: Session, jobs: list[MaintenanceJob]) -> None:
        """Run each job's task in the open transaction."""
        for job in jobs:
            job.value = job.task(session, job.now, *job.args)

    def result(self) -> Any:
        """The task's return value."""
        return self.value

    def committed(self) -> None:
        """Nothing to update in memory."""

    def failed(self, error: BaseException) -> None:
        """Nothing was written; the next pass tries again."""
        self.value = None

    def reset(self) -> None:
        """Forget a rolled-back attempt's value."""
        self.value = None

    def report(self) -> Any:
        """In the writer process, after the commit: the task's value."""
        return self.value

    def absorb(self, report: Any) -> None:
        """In the API process: the writer process's :meth:`report`."""
        self.value = report


class WriterTask:
    """A refresher task: when ``due(session, now)`` says so on a read-only session, write
    ``task(session, now, *args)`` through ``writer`` and return its value (else None).

    Parameters
    ----------
    writer : GroupWriter
        The worker's group writer (``write`` from the refresher's thread).
    reader : sessionmaker
        Read-only sessions (no write lock on SQLite).
    due, task : callable
        ``due(session, now) -> bool``; ``task(session, now, *args)``, module-level.
    timeout : float
        Seconds to wait for the commit; a time-out or a failure raises, and the refresher
        logs it and tries again on its next pass.
    """

    def __init__(
        self, writer: Any, reader: sessionmaker[Session], due: Callable[[Session, datetime], bool],
        task: Callable[..., Any], *args: Any, timeout: float = 10.0,
    ) -> None:  # fmt: skip
        self.writer, self.reader, self.due, self.task = writer, reader, due, task
        self.args, self.timeout = args, timeout

    def __call__(self, now: datetime | None = None) -> Any:
        now = now or utcnow()
        with self.reader() as session:
            if not self.due(session, now):
                return None
        return self.writer.write(MaintenanceJob(self.task, now, *self.args), self.timeout)
