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
``recv`` (on the worker's event loop, :meth:`WriterProcess.commit_async`, or on the
writer thread, :meth:`WriterProcess.commit`).

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

    async def send_async(self, loop: asyncio.AbstractEventLoop, payload: bytes) -> None:
        """:meth:`send_bytes` on ``loop`` (the socket must be non-blocking)."""
        data = _HEADER.pack(len(payload)) + payload
        try:  # most batches fit the socket's buffer: one plain send, no future
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(data):
            await loop.sock_sendall(self._sock, memoryview(data)[sent:])

    async def recv_async(self, loop: asyncio.AbstractEventLoop) -> bytes:
        """:meth:`recv_bytes` on ``loop`` (the socket must be non-blocking)."""
        data, self._pending = self._pending, b""
        while len(data) < _HEADER.size:
            chunk = await loop.sock_recv(self._sock, 1 << 16)
            if not chunk:
                raise EOFError("the writer socket closed" + (" mid-message" if data else ""))
            data += chunk
        need = _HEADER.size + _HEADER.unpack_from(data)[0]
        if len(data) < need:
            buffer = bytearray(need)
            buffer[: len(data)] = data
            view, have = memoryview(buffer), len(data)
            while have < need:
                got = await loop.sock_recv_into(self._sock, view[have:])
                if not got:
                    raise EOFError("the writer socket closed mid-message")
                have += got
            return bytes(view[_HEADER.size :])
        self._pending = data[need:]
        return data[_HEADER.size : need]

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
        #: Seconds each committed batch took in the child, from its arrival to its commit
        #: (against the writer's own ``transaction_seconds``, which adds the crossing both
        #: ways and the API process's wait for its interpreter lock).
        self.transaction_seconds = LatencyCounts()

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
    ) -> None:
        """Write ``jobs`` in one transaction in the child; return once it is committed.

        Each job's ``report()`` (computed in the child after the commit) is handed to its
        ``absorb()`` here. ``before_commit`` must be picklable (a module-level function).

        Raises
        ------
        WriteUnavailableError
            The database could not commit (down, locked, unreachable), or the child
            died: nothing may be shown.
        RemoteWriteError
            The batch failed for a reason of its own (a bug, a constraint violation).
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
            raise self._lost(exc) from exc
        self._answer(jobs, reply)

    async def commit_async(
        self, jobs: Sequence[Any], before_commit: Callable[[Session], None] | None = None
    ) -> None:
        """:meth:`commit` for the event loop that owns the socket (see
        :meth:`api.writer.GroupWriter.bind`): the batch goes out and its answer comes in
        through the loop, with no thread and no hand-over of the GIL between them.

        A child that must be (re)started is started on the loop's default executor (a
        blocking wait of up to a minute). Cancelled with the batch in flight, the child's
        answer can no longer be matched to its batch: the child is stopped (the next batch
        starts another) and nothing of the batch is shown.
        """
        loop = asyncio.get_running_loop()
        if self._conn is None or self._process is None or self._process.returncode is not None:
            if self._process is not None:
                log.error("writer process %s exited (code %s); starting another",
                          self._process.pid, self._process.returncode)  # fmt: skip
            await loop.run_in_executor(None, self.start)
        conn = self._conn
        assert conn is not None
        payload = pickle.dumps((list(jobs), before_commit), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            conn.blocking(False)
            await conn.send_async(loop, payload)
            reply = await conn.recv_async(loop)
        except (EOFError, OSError) as exc:
            raise self._lost(exc) from exc
        except BaseException:
            with self._lock:
                self._close()
            raise
        self._answer(jobs, reply)

    def _lost(self, exc: BaseException) -> Exception:
        """The child died with the batch in flight: its rows may or may not be committed,
        and nothing of it may be shown."""
        from api.writer import WriteUnavailableError

        with self._lock:
            self._close()
        return WriteUnavailableError(f"the writer process exited ({type(exc).__name__})")

    def _answer(self, jobs: Sequence[Any], reply: bytes) -> None:
        """Hand each job its report, or raise what the child said went wrong."""
        from api.writer import WriteUnavailableError

        kind, answer = pickle.loads(reply)
        if kind == "ok":
            reports, seconds = answer
            for job, report in zip(jobs, reports, strict=True):
                job.absorb(report)
            self.transaction_seconds.observe(seconds)
            return
        if kind == "unavailable":
            raise WriteUnavailableError(answer)
        raise RemoteWriteError(answer)


def _serve(conn: _Frames) -> None:
    """The child: write each batch it receives until its socket closes or it gets None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(PROCESS_NAME)  # "pricing-writer" in ps and top (Linux only)
    # Load what unpickling a batch needs before the first one arrives.
    import api.services.outcomes
    import api.services.quote_writes  # noqa: F401
    from api.db import make_session_factory
    from api.writer import _unavailable, write_jobs

    try:
        recipe: EngineRecipe = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    engine = recipe.make(pool_size=2)
    sessions = make_session_factory(engine)
    try:
        conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the API process is gone (or closed the socket)
            try:
                request = pickle.loads(message)
                if request is None:
                    return
                jobs, before_commit = request
                started = time.perf_counter()
                write_jobs(sessions, jobs, before_commit)
                reply: tuple[str, Any] = ("ok", ([job.report() for job in jobs],
                                                 time.perf_counter() - started))
            except BaseException as exc:  # every failure goes back to the API process
                text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                reply = ("unavailable" if _unavailable(exc) else "failed", text)
            try:
                conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
            except (OSError, ValueError):
                return
    finally:
        engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("PRICING_LOG_LEVEL", "warning").upper())
    _serve(_Frames(socket.socket(fileno=int(sys.argv[1]))))
