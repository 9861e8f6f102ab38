"""The group writer's transactions in a process of their own.

A worker's :class:`~api.writer.GroupWriter` batches jobs on a thread of the API process.
With ``PRICING_WRITER_PROCESS`` on (the default for a served worker), that thread does not
run the batch's statements itself: it sends the batch's rows over a socket to this child
process, which opens its own engine on the same database (:class:`api.db.EngineRecipe`),
writes the batch in one transaction exactly as the thread would (:func:`api.writer.write_jobs`)
and answers with what each job needs to know (an idempotency key already held, an offer
refused, a sticky conflict, an outcome's status). Only then does the thread settle the
waiting requests: a price is still never shown, and an outcome never acknowledged, before
its rows are committed.

Why: one Python process runs one thread's bytecode at a time (the GIL). In-thread, the
statements of a transaction (SQLAlchemy compiling and binding, the driver's calls, each
of which gives the GIL up and must take it back from a busy event loop) competed with the
requests; measured with py-spy they were about 40 % of a loaded worker's samples, and the
wait for the group commit was the tail of a quote's latency. In the child they run on
another core, and the API process's part of a batch is one pickle, one ``send`` and one
``recv``: on the worker's event loop (:meth:`WriterProcess.attach`, the default), which
sends each turn's batches without waiting for earlier answers while the child writes
every batch that has arrived in one transaction, or on a writer thread
(:meth:`WriterProcess.commit`), one batch at a time.

What the child does not hold: any in-memory state. The sticky map, the leases' balances
and every running total stay in the API process and are updated there after the commit
(``job.committed()``), as before.

Failure: if the child dies, the batch in flight fails with
:class:`~api.writer.WriteUnavailableError` (503 with ``Retry-After``, never a price; its
rows may or may not have been committed, as with a connection lost during a commit) and
the next batch starts a new child. The child ignores SIGINT and SIGTERM (a Ctrl-C or a
stop sent to the process group must not kill it before the API process has flushed its
queue) and exits when its socket closes, which is also what happens when the API process
is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from api.db import EngineRecipe
from api.latency import LatencyCounts

__all__ = ["PROCESS_NAME", "RemoteWriteError", "WriterProcess"]

_HEADER = struct.Struct("!I")


class _Frames:
    """Length-prefixed messages over a stream socket, in as few system calls as possible.

    Each call that blocks or does I/O gives the GIL up, and a writer thread that gives it
    up while the event loop runs gets it back only at the loop's next switch (up to
    ``PRICING_GIL_SWITCH_SECONDS``): ``multiprocessing.connection.Connection`` reads the
    4-byte header and the body with separate calls, and writes a body over 16 KB apart
    from its header. Here a message goes out in one ``sendall`` and usually comes in with
    one ``recv``.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        #: Bytes received past the last message (the start of the next one, if any).
        self._pending = b""

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self._sock.fileno()

    def send_bytes(self, payload: bytes) -> None:
        """Send one message (header and body in one buffer)."""
        self._sock.sendall(_HEADER.pack(len(payload)) + payload)

    def _more(self, data: bytes) -> bytes:
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise EOFError("the writer socket closed" + (" mid-message" if data else ""))
        return data + chunk

    def recv_bytes(self) -> bytes:
        """Receive one message; :class:`EOFError` when the other end has closed."""
        data, self._pending = self._pending, b""
        while len(data) < _HEADER.size:
            data = self._more(data)
        need = _HEADER.size + _HEADER.unpack_from(data)[0]
        if len(data) < need:
            buffer = bytearray(need)
            buffer[: len(data)] = data
            view, have = memoryview(buffer), len(data)
            while have < need:
                got = self._sock.recv_into(view[have:], need - have)
                if not got:
                    raise EOFError("the writer socket closed mid-message")
                have += got
            return bytes(view[_HEADER.size :])
        self._pending = data[need:]
        return data[_HEADER.size : need]

    def send_many(self, payloads: list[bytes]) -> None:
        """Send several messages in one call."""
        self._sock.sendall(b"".join(_HEADER.pack(len(p)) + p for p in payloads))

    def take(self) -> bytes | None:
        """A message that has arrived in full (buffered), or None."""
        data = self._pending
        if len(data) < _HEADER.size:
            return None
        need = _HEADER.size + _HEADER.unpack_from(data)[0]
        if len(data) < need:
            return None
        self._pending = data[need:]
        return data[_HEADER.size : need]

    def feed(self, chunk: bytes) -> None:
        """Add bytes read from the socket by someone else (an event loop's reader)."""
        self._pending += chunk

    def recv_available(self) -> list[bytes]:
        """The next message (waiting for it), then every further one that has already
        arrived in full: what the child writes in one transaction."""
        messages = [self.recv_bytes()]
        while True:
            try:
                chunk = self._sock.recv(1 << 18, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:  # closed: the next recv_bytes says so
                break
            self._pending += chunk
        while (message := self.take()) is not None:
            messages.append(message)
        return messages

    def blocking(self, flag: bool) -> None:
        """Put the socket in blocking (the thread's calls) or non-blocking (an event
        loop's) mode; nothing to do when it is in that mode already."""
        if self._sock.getblocking() != flag:
            self._sock.setblocking(flag)

    def poll(self, timeout: float) -> bool:
        """Whether a message (or the end of the stream) arrives within ``timeout`` seconds."""
        return bool(self._pending) or bool(select.select([self._sock], [], [], timeout)[0])

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


#: The child's name in ``ps`` and ``top`` (``/proc/<pid>/comm``).
PROCESS_NAME = "pricing-writer"

log = logging.getLogger("pricing.writer")


class RemoteWriteError(RuntimeError):
    """The writer process could not write a batch for a reason of the batch's own (a bug,
    a constraint): the writer retries its jobs one by one, as with an in-thread failure."""


class WriterProcess:
    """The child process that runs one worker's write transactions.

    The child is ``python -m api.writer_process`` (a fresh interpreter that imports only what
    writing needs: no web framework, and never the parent's ``__main__``), connected by a
    socket pair; the first message gives it the engine's recipe.

    Parameters
    ----------
    recipe : EngineRecipe
        How the worker's engine was made; the child makes its own the same way.
    """

    def __init__(self, recipe: EngineRecipe) -> None:
        self.recipe = recipe
        self._conn: _Frames | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        #: Children started (1 after the first start; more after a child died).
        self.starts = 0
        #: Seconds each commit took in the child, from its batches' arrival to its commit
        #: (against the writer's own ``transaction_seconds``, which adds the crossing both
        #: ways and the wait for the API process to read the answer).
        self.transaction_seconds = LatencyCounts()
        #: The highest commit number an answer has reported (the child numbers them).
        self._last_commit = 0
        #: Attached to an event loop: (loop, on_messages, on_lost); see :meth:`attach`.
        self._attached: tuple[asyncio.AbstractEventLoop, Callable[[list[bytes]], None],
                              Callable[[BaseException], None]] | None = None  # fmt: skip
        self._out = bytearray()
        self._writing = False

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it starts)."""
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        """Whether the child runs."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the child unless it runs, and wait until it is ready (idempotent).

        Raises
        ------
        WriteUnavailableError
            The child did not get ready within ``timeout`` seconds (it is killed).
        """
        from api.writer import WriteUnavailableError

        with self._lock:
            if self.alive():
                return
            self._close()
            ours, theirs = socket.socketpair()
            env = dict(os.environ)
            # The child imports api.* from where this process did, installed or not.
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "api.writer_process", str(theirs.fileno())],
                    pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            finally:
                theirs.close()
            conn = _Frames(ours)
            self.starts += 1
            try:
                conn.send_bytes(pickle.dumps(self.recipe, protocol=pickle.HIGHEST_PROTOCOL))
                ready = conn.poll(timeout) and pickle.loads(conn.recv_bytes())[0] == "ready"
            except (EOFError, OSError):
                ready = False
            if not ready:
                conn.close()
                process.kill()
                code = process.wait(5)
                raise WriteUnavailableError(f"the writer process did not start (exit code {code})")
            self._conn, self._process = conn, process
            self._last_commit = 0  # a new child numbers its commits from 1

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to finish and wait for it (killed after ``timeout`` seconds)."""
        with self._lock:
            conn, process = self._conn, self._process
            if conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    conn.blocking(True)
                    conn.send_bytes(pickle.dumps(None))
            if process is not None:
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)  # reap it
        self._conn = self._process = None

    def commit(
        self, jobs: Sequence[Any], before_commit: Callable[[Session], None] | None = None
    ) -> dict[int, BaseException]:
        """Write ``jobs`` in one transaction in the child; return once it is committed.

        Each job's ``report()`` (computed in the child after the commit) is handed to its
        ``absorb()`` here. ``before_commit`` must be picklable (a module-level function).
        If the transaction fails for a reason of its own, the child writes each job alone:
        the jobs that still fail are returned (index in ``jobs`` → error); the others are
        committed.

        Raises
        ------
        WriteUnavailableError
            The database could not commit (down, locked, unreachable), or the child
            died: nothing may be shown.
        RemoteWriteError
            The batch's only job failed for a reason of its own (a bug, a constraint).
        """
        # No waitpid per batch (a system call, so a GIL hand-off): a child that died since
        # the last batch shows as a closed socket below (that batch fails with 503), unless
        # the idle writer's check (``GroupWriter._revive``) has replaced it already.
        if self._conn is None or self._process is None or self._process.returncode is not None:
            if self._process is not None:
                log.error("writer process %s exited (code %s); starting another",
                          self._process.pid, self._process.returncode)  # fmt: skip
            self.start()
        conn = self._conn
        assert conn is not None
        payload = pickle.dumps((list(jobs), before_commit), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            conn.blocking(True)
            conn.send_bytes(payload)
            reply = conn.recv_bytes()
        except (EOFError, OSError) as exc:
            with self._lock:
                self._close()
            raise _exited(exc) from exc
        return self.answer(jobs, reply)[0]

    # ------------------------------------------------------------------ on an event loop
    def attach(
        self, loop: asyncio.AbstractEventLoop, on_messages: Callable[[list[bytes]], None],
        on_lost: Callable[[BaseException], None],
    ) -> None:  # fmt: skip
        """Hand the running child's socket to ``loop`` (on the loop's thread): batches go
        out with :meth:`send_nowait` and the child's answers, in order, to
        ``on_messages``; a child that dies (its socket closes) is closed here and
        reported to ``on_lost``. Nothing blocks: the loop reads when there is something."""
        conn = self._conn
        assert conn is not None, "start the writer process first"
        conn.blocking(False)
        self._attached = (loop, on_messages, on_lost)
        self._out = bytearray()
        self._writing = False
        loop.add_reader(conn.fileno(), self._readable)

    def detach(self) -> None:
        """Take the socket back from the loop (on the loop's thread); idempotent."""
        attached, self._attached = self._attached, None
        if attached is None or self._conn is None:
            return
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            attached[0].remove_reader(self._conn.fileno())
            attached[0].remove_writer(self._conn.fileno())
        self._conn.blocking(True)

    def send_nowait(self, payload: bytes) -> None:
        """Queue one batch for the child (attached: see :meth:`attach`)."""
        self._out += _HEADER.pack(len(payload))
        self._out += payload
        if not self._writing:
            self._send_out()

    def _send_out(self) -> None:
        attached, conn = self._attached, self._conn
        if attached is None or conn is None:
            return
        sock = conn._sock
        try:
            while self._out:
                sent = sock.send(self._out)
                del self._out[:sent]
        except (BlockingIOError, InterruptedError):
            if not self._writing:  # the rest goes out when the socket can take it
                self._writing = True
                attached[0].add_writer(conn.fileno(), self._send_out)
            return
        except OSError as exc:
            self._drop(exc)
            return
        if self._writing:
            self._writing = False
            attached[0].remove_writer(conn.fileno())

    def _readable(self) -> None:
        attached, conn = self._attached, self._conn
        if attached is None or conn is None:
            return
        try:
            chunk = conn._sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(exc)
            return
        if not chunk:
            self._drop(EOFError("the writer socket closed"))
            return
        conn.feed(chunk)
        messages = []
        while (message := conn.take()) is not None:
            messages.append(message)
        if messages:
            attached[1](messages)

    def _drop(self, exc: BaseException) -> None:
        """The attached child is gone: close it and tell the loop's writer."""
        attached = self._attached
        self.detach()
        with self._lock:
            self._close()
        if attached is not None:
            attached[2](_exited(exc))

    def answer(self, jobs: Sequence[Any], reply: bytes) -> tuple[dict[int, BaseException], list[float]]:
        """Take in the child's answer for ``jobs``: each committed job absorbs its report.

        Returns
        -------
        failures : dict of int to BaseException
            The jobs that failed alone after their joint transaction failed.
        transactions : list of float
            Seconds (inside the child) of each commit that holds some of the jobs and was
            not reported by an earlier answer: a commit shared by several batches counts
            once.

        Raises
        ------
        WriteUnavailableError
            The database could not commit.
        RemoteWriteError
            The only job failed for a reason of its own.
        """
        from api.writer import WriteUnavailableError

        kind, detail, commits = pickle.loads(reply)
        fresh = [seconds for number, seconds in commits if number > self._last_commit]
        if commits:
            self._last_commit = max(self._last_commit, max(n for n, _ in commits))
        for seconds in fresh:
            self.transaction_seconds.observe(seconds)
        if kind == "ok":
            for job, report in zip(jobs, detail, strict=True):
                job.absorb(report)
            return {}, fresh
        if kind == "each":
            failures: dict[int, BaseException] = {}
            for index, (job, (status, value)) in enumerate(zip(jobs, detail, strict=True)):
                if status == "ok":
                    job.absorb(value)
                else:
                    failures[index] = (WriteUnavailableError(value) if status == "unavailable"
                                       else RemoteWriteError(value))  # fmt: skip
            return failures, fresh
        if kind == "unavailable":
            raise WriteUnavailableError(detail)
        raise RemoteWriteError(detail)


def _exited(exc: BaseException) -> Exception:
    """The child died with batches in flight: their rows may or may not be committed, and
    nothing of them may be shown."""
    from api.writer import WriteUnavailableError

    return WriteUnavailableError(f"the writer process exited ({type(exc).__name__})")


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


class _Transactions:
    """The child's side: each call writes every request that has arrived in one
    transaction (the group commit), and answers each request."""

    def __init__(self, sessions: Any) -> None:
        from api.writer import _unavailable, write_jobs

        self._sessions = sessions
        self._write = write_jobs
        self._unavailable = _unavailable
        #: Transactions committed so far (their numbers let the API process count them).
        self.count = 0

    def _commit(self, jobs: list[Any], hook: Any) -> tuple[int, float]:
        started = time.perf_counter()
        self._write(self._sessions, jobs, hook)
        self.count += 1
        return self.count, time.perf_counter() - started

    def answer(self, requests: list[tuple[Any, ...]]) -> list[tuple[str, Any, list[tuple[int, float]]]]:
        """One reply per request: ``(kind, detail, transactions)``; ``transactions`` lists
        the (number, seconds) of the commits that hold its jobs.

        - ``("ok", reports, ...)``: every job committed; ``reports[i]`` is job i's report;
        - ``("each", [(status, report or text)], ...)``: the joint transaction failed for a
          reason of its own and each job was then written alone (status ``ok``,
          ``failed`` or ``unavailable``);
        - ``("unavailable", text, [])``: the database cannot commit; nothing was;
        - ``("failed", text, [])``: the request's only job failed on its own.
        """
        jobs = [job for batch, *_ in requests for job in batch]
        hook = next((r[1] for r in requests if r[1] is not None), None)
        try:
            done = [self._commit(jobs, hook)]
        except BaseException as exc:  # every failure goes back to the API process
            if self._unavailable(exc):
                return [("unavailable", _text(exc), []) for _ in requests]
            if len(jobs) == 1:
                return [("failed", _text(exc), [])]
        else:
            return [("ok", [job.report() for job in batch], done) for batch, *_ in requests]
        replies: list[tuple[str, Any, list[tuple[int, float]]]] = []
        for batch, *_ in requests:  # isolate: each job alone, so one bad job fails alone
            each: list[tuple[str, Any]] = []
            done = []
            for job in batch:
                try:
                    done.append(self._commit([job], hook))
                except BaseException as single:
                    each.append(("unavailable" if self._unavailable(single) else "failed", _text(single)))
                else:
                    each.append(("ok", job.report()))
            replies.append(("each", each, done))
        return replies


def _groups(requests: list[Any]) -> list[list[Any]]:
    """Consecutive requests in transactions of at most the largest ``max_rows`` any of
    them asks for (a request's third item; a request alone may exceed it)."""
    groups: list[list[Any]] = []
    rows = limit = 0
    for request in requests:
        size = sum(job.rows for job in request[0])
        limit = max(limit, request[2] if len(request) > 2 else 0)
        if groups and rows + size <= limit:
            groups[-1].append(request)
            rows += size
        else:
            groups.append([request])
            rows = size
    return groups


def _serve(conn: _Frames) -> None:
    """The child: until its socket closes or it gets None, write every batch that has
    arrived in one transaction and answer each batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(PROCESS_NAME)  # "pricing-writer" in ps and top (Linux only)
    # Load what unpickling a batch needs before the first one arrives.
    import api.hot.maintenance
    import api.services.erasure
    import api.services.idempotency
    import api.services.outcomes
    import api.services.quote_writes  # noqa: F401
    from api.db import make_session_factory

    try:
        recipe: EngineRecipe = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    engine = recipe.make(pool_size=2)
    writer = _Transactions(make_session_factory(engine))
    try:
        conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        while True:
            try:
                messages = conn.recv_available()
            except (EOFError, OSError):
                return  # the API process is gone (or closed the socket)
            requests: list[Any] = []
            replies: list[Any] = []
            stop = False
            for message in messages:
                try:
                    request = pickle.loads(message)
                except BaseException as exc:  # answered in order, after the others
                    request = exc
                if request is None:
                    stop = True
                    break
                requests.append(request)
            good = [r for r in requests if not isinstance(r, BaseException)]
            answers = iter(a for group in _groups(good) for a in writer.answer(group))
            for request in requests:
                replies.append(("failed", _text(request), []) if isinstance(request, BaseException)
                               else next(answers))  # fmt: skip
            try:
                conn.send_many([pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in replies])
            except (OSError, ValueError):
                return
            if stop:
                return
    finally:
        engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("PRICING_LOG_LEVEL", "warning").upper())
    _serve(_Frames(socket.socket(fileno=int(sys.argv[1]))))
