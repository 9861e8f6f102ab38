"""Engine and session factory for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "READ_ONLY",
    "DatabaseBusyError",
    "EngineRecipe",
    "WalCheckpointer",
    "engine_recipe",
    "make_engine",
    "make_session_factory",
    "read_only",
    "session_scope",
]

#: Execution option marking a connection that only reads.
READ_ONLY = "pricing_read_only"


class DatabaseBusyError(RuntimeError):
    """No write transaction could start in time: the database is overloaded (HTTP 503)."""


class _WriterQueue:
    """Hands SQLite's single write lock to this process's threads in turn.

    Without it, every thread that wants to write issues ``BEGIN IMMEDIATE`` and, while
    another holds the lock, polls in SQLite's busy handler, which sleeps up to 100 ms
    between tries: the first to poll after a commit wins, and under load a quote can wait
    seconds while later ones pass it. Here writers wait on a lock that is released the
    moment the transaction ends (after the DBAPI commit or rollback), so they go in turn
    without sleeping. Other processes still meet the busy handler.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._holder: Any = None  # the DBAPI connection inside a write transaction

    def acquire(self, dbapi_connection: Any) -> None:
        if self._holder is dbapi_connection:  # already ours (a second BEGIN would fail anyway)
            return
        if not self._lock.acquire(timeout=self.timeout):
            raise DatabaseBusyError(f"no write slot within {self.timeout:g} s; retry later")
        self._holder = dbapi_connection

    def release(self, dbapi_connection: Any) -> None:
        # The dialect is handed the pool's proxy on commit/rollback and the raw connection on close.
        dbapi_connection = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
        if self._holder is dbapi_connection:
            self._holder = None
            self._lock.release()

    def install(self, engine: Engine) -> None:
        """Release on the dialect's commit, rollback and close of the holding connection."""
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback", "do_close"):
            original = getattr(dialect, name)

            def wrapped(dbapi_connection: Any, _original: Any = original) -> None:
                try:
                    _original(dbapi_connection)
                finally:
                    self.release(dbapi_connection)

            setattr(dialect, name, wrapped)


_log = logging.getLogger("pricing.db")


#: Bytes of a WAL frame's header (each frame is one page and its header).
_WAL_FRAME_HEADER = 24


class WalCheckpointer:
    """SQLite's WAL checkpoints on a thread of their own, off every commit's path.

    By default SQLite checkpoints inside the commit that takes the log past 1,000 pages:
    that commit copies the log into the database file and syncs it, and every request
    waiting on the group writer waits with it (measured here: 17-34 ms on a quiet disk,
    several times that under load, once every few 1,000-row batches). A serving process
    therefore turns the automatic checkpoint off on its connections
    (``make_engine(sqlite_checkpoint=False)``) and runs this thread, which every
    ``interval`` seconds makes a ``PASSIVE`` checkpoint on a connection of its own: it
    copies what no reader still needs, never waits for readers or writers, and releases
    the GIL while it works. Processes without it (the CLI, the updater) keep SQLite's
    automatic checkpoints, and the last connection to close checkpoints what is left.

    A passive checkpoint never lets the log start over while writes keep coming: the log
    is reused from its start only when a checkpoint has copied all of it, and under steady
    traffic new frames arrive while one runs, so the file grows for as long as the traffic
    lasts (measured: 2.3 GB of log for a 107 MB database after 45 s of quotes at 2,800/s).
    So when the log holds more than ``limit_bytes``, the checkpoint that follows the
    passive one is a ``RESTART`` checkpoint: it waits for the writer's current
    transaction, holds the next one back while it copies the few frames written since
    the passive pass, and makes the next commit write the log from its start again (the
    file keeps its size, so its blocks are reused; ``TRUNCATE`` would also free them and
    make the next writes allocate them again). That pause is the price of a bounded log.
    While a long read (a refit's, an analyst's) still uses the log, it cannot start over:
    the restart then waits at most :attr:`RESTART_WAIT_MS` for it, holding the writer
    back that long, and backs off before it tries again.

    Parameters
    ----------
    path : str
        The database file.
    interval : float
        Seconds between checkpoints (> 0).
    limit_bytes : int, optional
        Log size (bytes) above which the log is started over (see above); None: never.
    """

    #: Longest wait of a RESTART checkpoint for the log's readers (ms), during which it
    #: holds the writer back; and the connection's busy timeout otherwise (ms).
    RESTART_WAIT_MS = 50
    BUSY_TIMEOUT_MS = 1000

    def __init__(self, path: str, interval: float, limit_bytes: int | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if limit_bytes is not None and limit_bytes <= 0:
            raise ValueError("limit_bytes must be positive")
        self.path, self.interval, self.limit_bytes = path, interval, limit_bytes
        #: Times the log was started over (a RESTART checkpoint), and those refused as busy.
        self.restarts = 0
        self.restarts_busy = 0
        self._backoff = self._skip = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Checkpoints made, and the last one's (busy, log frames, frames checkpointed).
        self.runs = 0
        self.last: tuple[int, int, int] | None = None
        self._page_size: int | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int, int]:
        """One ``PASSIVE`` checkpoint, then a ``RESTART`` one if the log is over the limit:
        (busy flag, frames in the log, frames checkpointed) of the passive one.

        The log's size is what it holds since it last started over (its frames, each a
        page and a 24-byte header), not the file's: a restarted log keeps its file's size
        and writes it again from the start, so the file alone would call for a restart
        at every round once it had reached the limit.
        """
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        if self.limit_bytes is not None and self._log_bytes(connection, self.last[1]) > self.limit_bytes:
            if self._skip > 0:
                self._skip -= 1
                return self.last
            # A RESTART checkpoint holds the write lock while it waits for the log's readers
            # (a refit's or an analyst's long read keeps its snapshot in the log): it may
            # wait only RESTART_WAIT_MS, so the writer is held back that long at most, and
            # after a refusal it waits 1, 2, 4 ... 32 seconds (rounds of at least that
            # length, whatever the interval) before it tries again.
            connection.execute(f"PRAGMA busy_timeout={self.RESTART_WAIT_MS}")
            try:
                restarted = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                connection.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")
            if int(restarted[0]):  # busy: a reader or the writer held on
                self.restarts_busy += 1
                self._backoff = min(2 * self._backoff, 32) if self._backoff else 1
                self._skip = max(1, math.ceil(self._backoff / self.interval))
            else:
                self.restarts += 1
                self._backoff = 0
        return self.last

    def _log_bytes(self, connection: sqlite3.Connection, frames: int) -> int:
        """Bytes the log holds since it last started over (``frames`` from a checkpoint)."""
        if self._page_size is None:
            self._page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
        return max(frames, 0) * (self._page_size + _WAL_FRAME_HEADER)

    def _run(self) -> None:
        # The thread must outlive any error: with SQLite's own checkpoint off, a dead
        # checkpointer would let the log grow without bound.
        connection: sqlite3.Connection | None = None
        failing = False
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    if connection is None:
                        connection = sqlite3.connect(
                            self.path, timeout=self.BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                            check_same_thread=False,
                        )  # fmt: skip
                    self.checkpoint(connection)
                    if failing:
                        _log.warning("WAL checkpoints of %s work again", self.path)
                    failing = False
                except Exception as exc:  # busy, gone, disk: the next round tries again
                    if _busy(exc):
                        _log.debug("WAL checkpoint skipped: %s", exc)  # another one runs
                    else:
                        if not failing:
                            _log.warning("WAL checkpoint of %s failed (retrying every %.1f s): %s",
                                         self.path, self.interval, exc)  # fmt: skip
                        failing = True
                        if connection is not None:
                            connection.close()
                            connection = None
                if stopping:
                    return
        finally:
            if connection is not None:
                connection.close()


def _busy(exc: Exception) -> bool:
    """SQLite is busy or locked (another process checkpoints or holds a lock)."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _sqlite_pragmas(synchronous: str, autocheckpoint: bool, page_size: int | None = None) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if page_size is not None:
            # Takes effect only while the file is still empty (before WAL mode and the first
            # table); an existing database keeps its page size until a VACUUM.
            cursor.execute(f"PRAGMA page_size={int(page_size)}")
        # WAL lets readers run while one writer commits. synchronous=NORMAL is durable in
        # WAL mode against process kills (the OS keeps the log) but may lose the last
        # transactions on power loss; FULL syncs the log on every commit (once per group
        # commit of the writer) and survives power loss too.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        if not autocheckpoint:  # a WalCheckpointer thread does it, off the commit path
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return apply


@dataclass(frozen=True)
class EngineRecipe:
    """How an engine was made: enough for another process to open the same database the
    same way (the writer process, :mod:`api.writer_process`). Picklable."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def make(self, **overrides: Any) -> Engine:
        """A new engine like the original (``overrides`` replace its options)."""
        return make_engine(self.url, **{**self.options, **overrides})


_RECIPES: weakref.WeakKeyDictionary[Engine, EngineRecipe] = weakref.WeakKeyDictionary()


def engine_recipe(engine: Engine) -> EngineRecipe | None:
    """The recipe of an engine made by :func:`make_engine` (None for any other engine)."""
    return _RECIPES.get(engine)


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    write_wait_seconds: float = 10.0,
    sqlite_synchronous: str = "NORMAL",
    connect_timeout_seconds: int = 5,
    sqlite_autocheckpoint: bool = True,
    sqlite_page_size: int | None = None,
) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs.

    Parameters
    ----------
    url : str
        SQLAlchemy URL (``sqlite:///path.db`` or ``postgresql+psycopg://...``).
    pool_size : int
        Connections kept per process (PostgreSQL; SQLite uses one per thread).
    write_wait_seconds : float
        SQLite: how long a write transaction waits for its turn (s) before
        :class:`DatabaseBusyError`; writers of one engine queue in-process (:class:`_WriterQueue`).
    sqlite_synchronous : {"NORMAL", "FULL"}
        SQLite's ``PRAGMA synchronous`` (the service uses ``PRICING_SQLITE_SYNCHRONOUS``).
    connect_timeout_seconds : int
        PostgreSQL: how long opening a connection may take (s; at least 2) before it fails,
        so an unreachable server is an error in seconds, not a hang.
    sqlite_autocheckpoint : bool
        SQLite: False turns off the WAL checkpoint that SQLite otherwise runs inside a
        commit; the process must then run a :class:`WalCheckpointer`.
    sqlite_page_size : int, optional
        SQLite: the page size (bytes, a power of two from 512 to 65536) of a database this
        engine creates; an existing one keeps its own. None: SQLite's default (4096).

    Returns
    -------
    Engine
        Ready to use; SQLite connections run in WAL mode with foreign keys on.
    """
    engine = _build_engine(url, pool_size=pool_size, write_wait_seconds=write_wait_seconds,
                           sqlite_synchronous=sqlite_synchronous,
                           connect_timeout_seconds=connect_timeout_seconds,
                           sqlite_autocheckpoint=sqlite_autocheckpoint,
                           sqlite_page_size=sqlite_page_size)  # fmt: skip
    _RECIPES[engine] = EngineRecipe(url, {
        "pool_size": pool_size, "write_wait_seconds": write_wait_seconds,
        "sqlite_synchronous": sqlite_synchronous,
        "connect_timeout_seconds": connect_timeout_seconds,
        "sqlite_autocheckpoint": sqlite_autocheckpoint,
        "sqlite_page_size": sqlite_page_size,
    })  # fmt: skip
    return engine


def engine_for(settings: Any, **options: Any) -> Engine:
    """:func:`make_engine` for ``settings`` (an :class:`api.settings.Settings`): its database
    URL and the SQLite page size of a database it creates; ``options`` as for make_engine."""
    return make_engine(settings.database_url, sqlite_page_size=settings.sqlite_page_size, **options)


def _build_engine(
    url: str, *, pool_size: int, write_wait_seconds: float, sqlite_synchronous: str,
    connect_timeout_seconds: int, sqlite_autocheckpoint: bool, sqlite_page_size: int | None,
) -> Engine:  # fmt: skip
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            # Errors and logs never carry statement parameters (customer ids, context).
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        if sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"sqlite_synchronous must be NORMAL or FULL, got {sqlite_synchronous!r}")
        event.listen(engine, "connect",
                     _sqlite_pragmas(sqlite_synchronous, sqlite_autocheckpoint, sqlite_page_size))  # fmt: skip
        # Multi-row INSERTs run as one statement (SQLAlchemy's "insertmanyvalues"), not as
        # pysqlite's executemany, which steps once per row: each step releases and retakes
        # the GIL, and a busy event loop makes the writer wait a switch interval per row.
        engine.dialect.use_insertmanyvalues_wo_returning = True

        # pysqlite's own transaction handling defers BEGIN until the first write, which
        # lets two writers deadlock on lock upgrade; issue BEGIN ourselves instead.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        writers = _WriterQueue(write_wait_seconds)
        writers.install(engine)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers take the write lock up front, in turn; readers (read_only sessions)
            # start a deferred transaction, which in WAL mode never blocks or waits for writers.
            if conn.get_execution_options().get(READ_ONLY, False):
                conn.exec_driver_sql("BEGIN")
                return
            dbapi_connection = conn.connection.dbapi_connection
            writers.acquire(dbapi_connection)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writers.release(dbapi_connection)
                raise

        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
        hide_parameters=True, pool_timeout=connect_timeout_seconds,
        # Every session in UTC, whatever the server's TimeZone: SQL that takes a day of a
        # timestamp (the refit's per-day reads, date()) then means the UTC day, as the
        # Python side does.
        connect_args={"connect_timeout": max(2, int(connect_timeout_seconds)),
                      "options": "-c TimeZone=UTC"},
    )  # fmt: skip


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine`` (objects stay usable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def read_only(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """A factory like ``factory`` whose sessions only read (no write lock on SQLite).

    Raises
    ------
    TypeError
        If ``factory`` is not bound to an engine.
    """
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("read_only() needs a sessionmaker bound to an Engine")
    return sessionmaker(bind=bind.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session and a transaction; commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session
