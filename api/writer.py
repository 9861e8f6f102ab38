"""One writer per worker: group commit of everything the quote path and outcomes produce.

Requests never open a write transaction. They hand a :class:`Job` to the worker's
:class:`GroupWriter` and wait for its future. The writer thread takes every job that is
ready (up to ``max_rows`` rows), writes them all in **one transaction** — jobs of one kind
together, with multi-row statements — commits, and only then resolves the futures: a
price is never shown, and an outcome never acknowledged, before its rows are committed.

If the batch fails, the writer retries each of its jobs alone, so one bad job (say a
constraint violation) cannot fail the others; a job that still fails gets its own
exception. When the database itself cannot commit (locked, unreachable, disk full), every
waiting job fails with :class:`WriteUnavailableError`, which the API answers with 503 and
``Retry-After``, never with a price.

Who carries the batches: a served worker with a writer process (the default) binds the
writer to its event loop (:meth:`GroupWriter.bind`): at each turn the loop sends the jobs
its requests queued to the writer process, without waiting for earlier answers; the
writer process writes every batch that has arrived in one transaction and answers each;
the loop settles the requests as the answers come in. No thread of the worker has to take
the GIL back from the busy loop after each commit, and the writer process does not idle
while an answer waits for the loop's turn. Otherwise (no writer process, blocking callers before a loop is bound, the CLI
and simulations) the writer thread does it, and runs the transactions itself when there
is no writer process.

SQLite: one ``BEGIN IMMEDIATE`` per batch (api/db.py); PostgreSQL: multi-row inserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.db import DatabaseBusyError
from api.latency import LatencyCounts
from api.writer_process import WriterProcess

__all__ = ["GroupWriter", "Job", "LatencyCounts", "WriteUnavailableError", "write_jobs"]

log = logging.getLogger("pricing.writer")

J = TypeVar("J", bound="Job")


#: Times a transaction that met a deadlock or a serialization failure is tried again.
TRANSIENT_RETRIES = 3

#: SQLSTATEs of failures that a retry of the same transaction resolves.
_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def _transient(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def write_jobs(
    sessions: sessionmaker[Session], jobs: Sequence[Job],
    before_commit: Callable[[Session], None] | None = None,
) -> None:  # fmt: skip
    """Write ``jobs`` in one transaction, jobs of one kind by one ``write_batch`` call.

    A deadlock or serialization failure (two workers' writers meeting on the same rows on
    PostgreSQL) is retried at once, up to :data:`TRANSIENT_RETRIES` times; each attempt
    starts by resetting what a rolled-back attempt set on the jobs. ``before_commit`` (a
    test hook) runs inside the transaction just before the commit.
    """
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.kind, []).append(job)
    for attempt in range(TRANSIENT_RETRIES + 1):
        for job in jobs:  # what a rolled-back attempt set on the jobs is void
            reset = getattr(job, "reset", None)
            if reset is not None:
                reset()
        try:
            with sessions() as session, session.begin():
                for group in groups.values():
                    type(group[0]).write_batch(session, group)
                if before_commit is not None:
                    before_commit(session)
            return
        except DBAPIError as exc:
            if attempt == TRANSIENT_RETRIES or not _transient(exc):
                raise
            log.info("transient write failure (%s); retrying", type(exc.orig).__name__)


class WriteUnavailableError(RuntimeError):
    """The writer could not commit: the caller must not show or acknowledge anything."""


class Job(Protocol):
    """Rows to write. Jobs of one class are written together by :meth:`write_batch`."""

    @property
    def rows(self) -> int:
        """Rows the job counts for towards a batch's size."""
        ...

    #: Group key: jobs with the same ``kind`` are written by one ``write_batch`` call.
    kind: ClassVar[str]

    @classmethod
    def write_batch(cls, session: Session, jobs: Sequence[Any]) -> None:
        """Write ``jobs`` (all of this class) inside the writer's open transaction.

        A job that must be refused on its own (not the batch) stores its error with
        :meth:`reject` and writes nothing; raising fails the whole batch.
        """
        ...

    def result(self) -> Any:
        """What the waiting request gets once the batch is committed."""
        ...

    def committed(self) -> None:
        """Called by the writer thread after the commit (update in-memory state)."""
        ...

    def failed(self, error: BaseException) -> None:
        """Called when the job's rows were not committed (return leased budget...)."""
        ...

    # With a writer process, a job also pickles (without its callbacks) and has:
    #   report() -> Any: in the child, after the commit, what the parent's copy must learn;
    #   absorb(report) -> None: in the API process, take it in (before committed()).


class GroupWriter:
    """The worker's single writer thread.

    Parameters
    ----------
    sessions : sessionmaker
        Write sessions (on SQLite each transaction starts with ``BEGIN IMMEDIATE``).
    max_rows : int
        Most rows per transaction.
    linger_seconds : float
        Under load (the previous batch held more than one job), how long the writer lets
        a batch fill before it commits: fewer, larger transactions for the same jobs. An
        idle writer, and one with ``linger_seconds=0``, commits whatever is ready at once
        (jobs that arrive during a commit go in the next one).
        A writer bound to an event loop (:meth:`bind`) does not linger: its batches
        fill in the writer process while it commits the previous one.
    process : WriterProcess, optional
        Run each transaction in this child process (:mod:`api.writer_process`) instead of
        on the writer thread: the thread batches, sends and settles; the statements run on
        another core, outside this process's GIL. Jobs must then pickle, and have
        ``report()``/``absorb()``. None: the thread writes itself.
    wait_seconds : float, optional
        How long an async request waits for its commit before it gets
        :class:`WriteUnavailableError` (a slow or unreachable database must not hold a
        checkout past its latency budget). A job whose request gave up is not written if
        the writer has not started it; if it already had, its rows may still commit, but
        nothing was shown or acknowledged. None: wait as long as it takes.
    """

    def __init__(
        self, sessions: sessionmaker[Session], *, max_rows: int = 2000, linger_seconds: float = 0.0,
        wait_seconds: float | None = None, process: WriterProcess | None = None,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._process = process
        #: An idle writer's next attempt to replace a dead writer process (monotonic s).
        self._revive_at = 0.0
        self._revive_delay = 0.0
        self.max_rows = max_rows
        self.linger = linger_seconds
        self.wait_seconds = wait_seconds
        #: When the last commit failed because the database could not be reached or was
        #: busy (``time.time()``), and why; cleared by the next successful commit.
        self.unavailable_since: float | None = None
        self.last_error: str | None = None
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        #: Settlements for event loops, sent once per batch (writer thread only).
        self._wakeups: dict[asyncio.AbstractEventLoop, list[tuple[_LoopWaiter, Any, BaseException | None]]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Whether the last batch had company (then the next one lingers).
        self._busy = False
        #: Transactions committed, and jobs in them (``pricing_writer_*`` in /metrics).
        self.batches = 0
        self.jobs_written = 0
        #: Seconds spent writing (transactions included), for metrics and benchmarks.
        self.busy_seconds = 0.0
        #: Per committed job, seconds from its submission to its commit (the time a quote
        #: or an outcome waits for the writer: lingering, earlier batches, its own).
        self.commit_waits = LatencyCounts()
        #: Per committed transaction, seconds from its start to its commit.
        self.transaction_seconds = LatencyCounts()
        #: Test hook: called inside each transaction just before commit.
        self.before_commit: Callable[[Session], None] | None = None
        #: The event loop that owns the writer process's socket (:meth:`bind`), its
        #: thread, its queue of jobs and the task that writes them.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._pending: deque[_Item] = deque()
        #: Batches sent to the writer process and not answered yet, oldest first, with
        #: when each went out (``time.perf_counter()``).
        self._inflight: deque[tuple[list[_Item], float]] = deque()
        self._busy_since = 0.0
        self._flush_due = False
        self._attached = False
        self._starting = False
        self._closing = False

    # ------------------------------------------------------------------ public
    @property
    def process(self) -> WriterProcess | None:
        """The writer process, when the transactions run in one."""
        return self._process

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop that writes through the writer process (:meth:`bind`), if any."""
        return self._loop

    def start(self) -> None:
        """Start the writer process, if any, and the writer thread (idempotent); a writer
        bound to an event loop (:meth:`bind`) has no thread."""
        with self._lock:
            if self._process is not None:
                self._process.start()
                if self._loop is not None and threading.get_ident() == self._loop_thread:
                    self._connected()
            if self._loop is None and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="group-writer", daemon=True)
                self._thread.start()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let ``loop``, the worker's event loop, write through the writer process.

        Call it on the loop's thread (the app's start-up does). From then on no thread
        of this process carries batches: at each turn the loop sends what its requests
        queued to the writer process, which writes every batch that has arrived in one
        transaction, and the loop settles the requests when the answers come in
        (measured under load, a writer thread's waits to take the GIL back from the busy
        loop after every commit, and its wake-ups of the loop, cost more than the
        batches' own handling). Blocking callers (:meth:`write`, :meth:`submit` from
        other threads) hand their jobs to the loop. Without a writer process (it writes
        on its thread), nothing changes.
        """
        if self._process is None or self._loop is not None:
            return
        with self._lock:
            self._loop, self._loop_thread = loop, threading.get_ident()
            thread, self._thread = self._thread, None
        if thread is not None:  # the thread writes what it was given, then hands over
            self._queue.put(None)
            thread.join()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._enqueue(item)
        self._closing = False

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (a writer bound to a running loop:
        from another thread; on the loop itself, use :meth:`aclose`)."""
        loop = self._loop
        if loop is not None and not self._closing:
            if threading.get_ident() != self._loop_thread and loop.is_running():
                asyncio.run_coroutine_threadsafe(self.aclose(timeout), loop).result(timeout + 5)
                return
            if self._pending or self._inflight:
                log.warning("writer stopped on its loop without aclose(): %d jobs not written",
                            len(self._pending) + sum(len(b) for b, _ in self._inflight))  # fmt: skip
            self._closing = True
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=timeout)
        if self._process is not None:
            if self._attached and threading.get_ident() == self._loop_thread:
                self._process.detach()
                self._attached = False
            self._process.stop(timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        """:meth:`stop` on the bound event loop: write what is queued, then stop."""
        if self._loop is None or self._closing:
            return
        deadline = time.monotonic() + timeout
        if self._pending:
            self._flush()
        while (self._pending or self._inflight or self._starting) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        self._closing = True
        if self._pending or self._inflight:
            log.warning("writer closed with %d jobs not written",
                        len(self._pending) + sum(len(b) for b, _ in self._inflight))  # fmt: skip
        if self._process is not None:
            if self._attached:
                self._process.detach()
                self._attached = False
            self._process.stop(max(0.1, deadline - time.monotonic()))

    def submit(self, job: Job) -> Future[Any]:
        """Queue ``job``; the future resolves to ``job.result()`` after the commit."""
        future: Future[Any] = Future()
        self._put(job, future)
        return future

    def on_loop(self) -> bool:
        """Whether the caller runs on the event loop this writer is bound to (where a
        blocking :meth:`write` would wait for itself)."""
        return self._loop is not None and threading.get_ident() == self._loop_thread

    def _put(self, job: Job, waiter: Future[Any] | _LoopWaiter) -> None:
        item = (job, waiter, time.perf_counter())
        loop = self._loop
        if loop is not None and self._closing:  # closed: nothing will write it, say so now
            error = WriteUnavailableError("the writer has stopped")
            job.failed(error)
            if isinstance(waiter, _LoopWaiter):
                settled: list[tuple[_LoopWaiter, Any, BaseException | None]] = [(waiter, None, error)]
                with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                    waiter.loop.call_soon_threadsafe(_resolve, settled)
            else:
                waiter.set_exception(error)
            return
        if loop is None:
            if self._thread is None:
                self.start()
            self._queue.put(item)
        elif threading.get_ident() == self._loop_thread:
            self._enqueue(item)
        else:
            try:
                loop.call_soon_threadsafe(self._enqueue, item)
            except RuntimeError:  # the loop is closed: nothing will write it
                self._fail(item, WriteUnavailableError("the worker's event loop has stopped"))
                self._wake()

    def write(self, job: Job, timeout: float | None = None) -> Any:
        """Submit ``job`` and wait for it (blocking callers: CLI, simulations, tests).

        Raises
        ------
        RuntimeError
            Called on the thread of the event loop that writes (:meth:`bind`): it would
            wait for itself. Use :meth:`write_async` there.
        """
        if self._loop is not None and threading.get_ident() == self._loop_thread:
            raise RuntimeError("GroupWriter.write() on its own event loop: use write_async()")
        return self.submit(job).result(timeout=timeout)

    async def write_async(self, job: Job, wait_seconds: float | None = None) -> Any:
        """Submit ``job`` and await it without blocking the event loop.

        The writer wakes each event loop once per batch (one ``call_soon_threadsafe`` for
        all of the loop's jobs in it), not once per job. ``wait_seconds`` overrides the
        writer's ``wait_seconds`` for this job.
        """
        limit = self.wait_seconds if wait_seconds is None else wait_seconds
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._put(job, _LoopWaiter(loop, future))
        if limit is None:
            return await future
        # On time-out the future is cancelled: the writer skips the job if it has not
        # started it, and _resolve never settles it. (A timer handle rather than
        # ``asyncio.wait_for``, which wraps the future in a task: measured ~15 us a quote.)
        timer = loop.call_later(limit, _expire, future)
        try:
            return await future
        except asyncio.CancelledError:
            if not getattr(future, "_expired", False):
                raise  # the request itself was cancelled (client gone)
            raise WriteUnavailableError(f"not committed within {limit:g} s") from None
        finally:
            timer.cancel()

    # ------------------------------------------------------------------ event loop
    def _enqueue(self, item: _Item) -> None:
        """On the bound loop: queue ``item``; what this turn of the loop queues goes out
        together (one :meth:`_flush` per turn)."""
        self._pending.append(item)
        if not self._flush_due:
            self._flush_due = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send every queued job to the writer process (up to ``max_rows`` rows a batch).

        Batches do not wait for the previous one's answer: the writer process writes all
        the batches that have arrived in one transaction, so it never idles while an
        answer crosses back and waits for this loop's turn (measured at 64 connections:
        half of each commit cycle when the loop sent a batch only after the last one's
        answer)."""
        self._flush_due = False
        process = self._process
        if not self._pending or process is None or not self._connected():
            return
        while self._pending and self._attached:
            items: list[_Item] = []
            rows = 0
            while self._pending and (not items or rows < self.max_rows):
                item = self._pending.popleft()
                waiter = item[1]
                if isinstance(waiter, _LoopWaiter) and waiter.future.cancelled():
                    item[0].failed(WriteUnavailableError("abandoned by its request"))
                    continue
                items.append(item)
                rows += item[0].rows
            if not items:
                break
            try:
                payload = pickle.dumps(([job for job, *_ in items], self.before_commit, self.max_rows),
                                       protocol=pickle.HIGHEST_PROTOCOL)  # fmt: skip
            except Exception as exc:  # a job that cannot travel: a bug, never a price
                for item in items:
                    self._fail(item, exc)
                continue
            now = time.perf_counter()
            if not self._inflight:
                self._busy_since = now
            self._inflight.append((items, now))
            process.send_nowait(payload)  # a child found dead here fails them (_lost)
        self._wake()

    def _connected(self) -> bool:
        """Whether the writer process is attached to the loop; if not, start one in the
        background (its start flushes the queue) and say no."""
        if self._attached:
            return True
        process = self._process
        assert process is not None and self._loop is not None
        if process.alive() and process._conn is not None:
            process.attach(self._loop, self._answered, self._lost)
            self._attached = True
            return True
        self._restart()
        return False

    def _restart(self) -> None:
        """Start a writer process on the loop's executor (a blocking wait of up to a
        minute), unless one is starting, the writer is closing, or an earlier failure's
        back-off has not passed (then the queued requests hear it now: 503)."""
        if self._closing:  # stopped: nothing will write what is still queued
            self._fail_pending(WriteUnavailableError("the writer has stopped"))
            return
        if self._starting or self._loop is None:
            return
        if time.monotonic() < self._revive_at:
            self._fail_pending(WriteUnavailableError("the writer process could not start; retrying"))
            return
        assert self._process is not None
        self._starting = True
        self._loop.run_in_executor(None, self._process.start).add_done_callback(self._started)

    def _started(self, future: asyncio.Future[None]) -> None:
        self._starting = False
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            self._revive_delay = min(60.0, 2.0 * max(self._revive_delay, 1.0))
            self._revive_at = time.monotonic() + self._revive_delay
            log.error("%s; next try in %.0f s", error or "writer process start cancelled", self._revive_delay)
            self._mark_unavailable(WriteUnavailableError(str(error)))
            self._fail_pending(WriteUnavailableError(f"the writer process did not start: {error}"))
            return
        self._revive_delay = 0.0
        self._connected()  # attached now: a child that dies while idle is noticed at once
        if self._pending:
            self._flush()

    def _answered(self, messages: list[bytes]) -> None:
        """The writer process's answers, in the order the batches went out."""
        process = self._process
        assert process is not None
        now = time.perf_counter()
        for message in messages:
            items, sent = self._inflight.popleft()
            try:
                failures, commits = process.answer([job for job, *_ in items], message)
            except BaseException as exc:
                self._mark_unavailable(exc)
                for item in items:
                    self._fail(item, exc)
                continue
            for _ in commits:  # the commits this answer is the first to report
                self.batches += 1
                self.transaction_seconds.observe(now - sent)
            self.unavailable_since = None
            for index, item in enumerate(items):
                if index in failures:
                    self._fail(item, failures[index])
                else:
                    self.commit_waits.observe(now - item[2])
                    self._done(item)
        if not self._inflight:
            self.busy_seconds += now - self._busy_since
        self._wake()

    def _lost(self, error: BaseException) -> None:
        """The writer process died: every batch in flight fails (503; its rows may or may
        not be committed, none was shown), and another process starts."""
        self._attached = False
        inflight, self._inflight = self._inflight, deque()
        if inflight:
            self.busy_seconds += time.perf_counter() - self._busy_since
            log.error("writer process exited with %d batches in flight", len(inflight))
        self._mark_unavailable(error)
        for items, _ in inflight:
            for item in items:
                self._fail(item, error)
        self._wake()
        self._restart()

    def _fail_pending(self, error: BaseException) -> None:
        pending, self._pending = self._pending, deque()
        for item in pending:
            self._fail(item, error)
        self._wake()

    # ------------------------------------------------------------------ thread
    def _take(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, rows, stop = [first], first[0].rows, False
        if self.linger > 0 and self._busy:
            # Under load, let the batch fill for ``linger`` seconds, then take what came:
            # one sleep (no GIL held) rather than a wake-up per arriving job. An idle
            # writer (last batch of one job) commits at once: no added latency.
            time.sleep(self.linger)
        while rows < self.max_rows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
            rows += item[0].rows
        self._busy = len(batch) > 1
        return batch, stop

    def _run(self) -> None:
        while True:
            try:
                # Idle for a second: make sure a writer process is there for the next batch
                # (one that died between batches is replaced now, not by a waiting request).
                item = self._queue.get(timeout=1.0) if self._process is not None else self._queue.get()
            except queue.Empty:
                self._revive()
                continue
            if item is None:
                return
            batch, stop = self._take(item)
            start = time.perf_counter()
            try:
                self._write(batch)
            finally:
                self._wake()
            self.busy_seconds += time.perf_counter() - start
            if stop:
                return

    def _revive(self) -> None:
        process = self._process
        if process is None or process.alive() or time.monotonic() < self._revive_at:
            return
        log.error("writer process %s is gone; starting another", process.pid)
        try:
            process.start()
        except WriteUnavailableError as exc:  # the next batch tries again (and answers 503)
            # Back off (2, 4 ... 60 s) rather than spawn a failing child every second.
            self._revive_delay = min(60.0, 2.0 * max(self._revive_delay, 1.0))
            self._revive_at = time.monotonic() + self._revive_delay
            log.error("%s; next try in %.0f s", exc, self._revive_delay)
        else:
            self._revive_delay = 0.0

    def _transaction(self, jobs: Sequence[Job]) -> dict[int, BaseException]:
        """Write ``jobs`` in one transaction: here, or in the writer process (which then
        writes each job alone if the transaction fails; those that still fail are
        returned)."""
        if self._process is not None:
            return self._process.commit(jobs, self.before_commit)
        write_jobs(self._sessions, jobs, self.before_commit)
        return {}

    def _write(self, batch: list[_Item]) -> None:
        live = []
        for item in batch:
            if isinstance(item[1], _LoopWaiter) and item[1].future.cancelled():
                # The request gave up (time-out or client gone): write nothing for it.
                item[0].failed(WriteUnavailableError("abandoned by its request"))
            else:
                live.append(item)
        batch = live
        if not batch:
            return
        jobs = [job for job, *_ in batch]
        started = time.perf_counter()
        try:
            failures = self._transaction(jobs)
        except BaseException as exc:  # isolate: each job alone, in its own transaction
            if len(batch) == 1 or _unavailable(exc):
                # One job, or a database that cannot commit anything now: no job alone
                # would fare better, so each waiting request hears it at once.
                self._mark_unavailable(exc)
                for item in batch:
                    self._fail(item, exc)
                return
            log.warning("batch of %d jobs failed (%s); retrying each alone", len(batch), exc)
            for item in batch:
                alone = time.perf_counter()
                try:
                    self._transaction([item[0]])
                except BaseException as single:
                    self._fail(item, single)
                else:
                    self.batches += 1
                    committed = time.perf_counter()
                    self.transaction_seconds.observe(committed - alone)
                    self.commit_waits.observe(committed - item[2])
                    self._done(item)
            return
        self.batches += 1
        self.unavailable_since = None
        committed = time.perf_counter()
        self.transaction_seconds.observe(committed - started)
        for index, item in enumerate(batch):
            if index in failures:  # the writer process wrote it alone, and it failed
                self._fail(item, failures[index])
                continue
            self.commit_waits.observe(committed - item[2])
            self._done(item)

    def _mark_unavailable(self, exc: BaseException) -> None:
        if _unavailable(exc):
            if self.unavailable_since is None:
                self.unavailable_since = time.time()
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    def _settle(self, waiter: Future[Any] | _LoopWaiter, result: Any, error: BaseException | None) -> None:
        if isinstance(waiter, _LoopWaiter):
            self._wakeups.setdefault(waiter.loop, []).append((waiter, result, error))
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)

    def _wake(self) -> None:
        """Release the batch's waiting requests: one wake-up per event loop (none for the
        bound loop, on which this runs)."""
        wakeups, self._wakeups = self._wakeups, {}
        for loop, settled in wakeups.items():
            if loop is self._loop and threading.get_ident() == self._loop_thread:
                _resolve(settled)
                continue
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, settled)

    def _done(self, item: _Item) -> None:
        job, waiter, _ = item
        self.jobs_written += 1
        try:
            job.committed()
        except Exception:  # in-memory bookkeeping only: the rows are committed
            log.exception("post-commit step failed")
        try:
            result = job.result()
        except BaseException as exc:  # a job refused on its own (e.g. an offer that no longer fits)
            self._settle(waiter, None, exc)
        else:
            self._settle(waiter, result, None)

    def _fail(self, item: _Item, exc: BaseException) -> None:
        job, waiter, _ = item
        if not _unavailable(exc):  # a bug or a constraint: loud, but still never a price
            log.error("write failed: %s", exc, exc_info=exc)
        error = exc if isinstance(exc, WriteUnavailableError) else WriteUnavailableError(f"could not commit: {exc}")
        error.__cause__ = exc if error is not exc else exc.__cause__
        try:
            job.failed(error)
        finally:
            self._settle(waiter, None, error)


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot commit now (down, unreachable, locked)."""
    return isinstance(exc, OperationalError | DatabaseBusyError | WriteUnavailableError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class _LoopWaiter:
    """An asyncio future and its loop (set from the writer thread via the loop)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future


#: A queued job, who waits for it, and when it was queued (``time.perf_counter()``).
_Item = tuple[Job, Future[Any] | _LoopWaiter, float]


def _expire(future: asyncio.Future[Any]) -> None:
    """The request's wait is over: cancel its future, marked as a time-out."""
    if not future.done():
        future._expired = True  # type: ignore[attr-defined]
        future.cancel()


def _resolve(settled: list[tuple[_LoopWaiter, Any, BaseException | None]]) -> None:
    """In the event loop: settle each waiting request (skipping those that went away)."""
    for waiter, result, error in settled:
        future = waiter.future
        if future.done():  # the request was cancelled (client gone)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
