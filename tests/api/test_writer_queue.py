"""SQLite writers of one process queue for the write lock instead of polling for it."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.db import DatabaseBusyError, WalCheckpointer, make_engine, make_session_factory
from api.migrate import upgrade
from api.security import Role
from api.services.keys import create_key
from api.settings import load_settings
from tests.conftest import Api


@pytest.fixture
def lite(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", write_wait_seconds=0.3)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER)")
    yield engine
    engine.dispose()


def _count(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_concurrent_writers_all_commit(lite):
    sessions = make_session_factory(lite)
    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(25):
                with sessions() as session, session.begin():
                    session.execute(text("INSERT INTO t VALUES (:i)"), {"i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and _count(lite) == 200


def test_a_writer_that_cannot_get_its_turn_fails_fast_with_database_busy(lite):
    """The second writer waits on the in-process queue (0.3 s here), not SQLite's 10 s busy
    timeout, and gets DatabaseBusyError rather than 'database is locked'."""
    sessions = make_session_factory(lite)
    holder = sessions()
    holder.begin()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(DatabaseBusyError), sessions() as other, other.begin():
        other.execute(text("INSERT INTO t VALUES (2)"))
    holder.commit()
    holder.close()
    with sessions() as session, session.begin():  # the turn passed on after the commit
        session.execute(text("INSERT INTO t VALUES (3)"))
    assert _count(lite) == 2


@pytest.mark.parametrize("ending", ["rollback", "error", "close", "invalidate"])
def test_the_turn_passes_on_however_the_transaction_ends(lite, ending):
    sessions = make_session_factory(lite)
    session = sessions()
    session.begin()
    session.execute(text("INSERT INTO t VALUES (1)"))
    if ending == "rollback":
        session.rollback()
    elif ending == "error":
        with pytest.raises(Exception, match="no such table"):
            session.execute(text("INSERT INTO missing VALUES (1)"))
        session.rollback()
    elif ending == "invalidate":
        session.connection().invalidate()
    session.close()
    with sessions() as other, other.begin():
        other.execute(text("INSERT INTO t VALUES (2)"))
    assert _count(lite) == 1


def test_readers_never_queue_behind_a_writer(lite):
    from api.db import read_only

    sessions = make_session_factory(lite)
    holder = sessions()
    holder.begin()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    with read_only(sessions)() as reader, reader.begin():
        assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    holder.rollback()
    holder.close()


def test_an_overloaded_database_answers_503_with_retry_after(tmp_path):
    """A quote that cannot write in time is refused with 503 (retry), never a 500; nothing is logged."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_session_factory(engine)() as session:
        keys = {
            role: create_key(session, name=role.value, role=role, actor=None).key for role in Role
        }
    engine.dispose()
    app = create_app(load_settings(database_url=url, db_write_wait_seconds=0.2))
    with TestClient(app) as client:
        api = Api(client, keys)
        api.segment("default")
        api.product("TEA-1", "10.00", "4.00")
        holder = make_session_factory(app.state.pricing.engine)()
        holder.begin()
        holder.execute(text("SELECT 1"))  # a write transaction of this worker holds the turn
        body = {"customer_id": "c-9", "lines": [{"sku": "TEA-1", "quantity": 1}]}
        response = api.post("/v1/quotes", Role.CHECKOUT, json=body)
        holder.rollback()
        holder.close()
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert api.post("/v1/quotes", Role.CHECKOUT, json=body).status_code == 201
        assert len(api.get("/v1/decisions").json()["items"]) == 1


def _wal_frames(path: Path) -> int:
    """Frames in the write-ahead log (its header is 32 bytes, each frame 24 + page size)."""
    wal = Path(f"{path}-wal")
    return 0 if not wal.exists() or wal.stat().st_size < 32 else (wal.stat().st_size - 32) // (24 + 4096)


def test_without_autocheckpoint_commits_leave_the_log_to_the_checkpointer(tmp_path):
    """A serving process's connections never checkpoint inside a commit (that stalls every
    request waiting on it); its WalCheckpointer thread copies the log into the database."""
    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}", sqlite_autocheckpoint=False)
    default = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.begin() as conn, default.begin() as other:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
        assert other.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER, pad TEXT)")
    for _ in range(8):  # ~1,500 pages: past the 1,000 at which SQLite would checkpoint
        with engine.begin() as conn:
            conn.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                 "WHERE i < 800) INSERT INTO t SELECT i, printf('%.1000c', 'x') FROM n")  # fmt: skip
    frames = _wal_frames(path)
    assert frames > 1000
    checkpointer = WalCheckpointer(str(path), interval=0.05)
    checkpointer.start()
    deadline = time.monotonic() + 10
    while (checkpointer.last is None or checkpointer.last[2] < frames) and time.monotonic() < deadline:
        time.sleep(0.05)
    checkpointer.stop()
    assert checkpointer.runs >= 1
    busy, log_frames, copied = checkpointer.last
    assert busy == 0 and copied == log_frames >= frames
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 6400
    engine.dispose()
    default.dispose()


def test_a_serving_worker_on_sqlite_checkpoints_off_the_commit_path(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app(load_settings(database_url=url, sqlite_checkpoint_seconds=0.05))
    with TestClient(app), app.state.pricing.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    off = create_app(load_settings(database_url=url, sqlite_checkpoint_seconds=0))
    with TestClient(off), off.state.pricing.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000


def _write_without_pause(path, seconds: float) -> tuple[int, int, int]:
    """Commit small transactions on ``path`` one after another for ``seconds`` (a writer
    that never pauses for long, as under steady traffic): the largest log seen (bytes), the times the
    log file shrank, and the rows written."""
    engine = make_engine(f"sqlite:///{path}", sqlite_autocheckpoint=False)
    wal = Path(f"{path}-wal")
    largest = shrank = rows = size = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t SELECT 1, printf('%.3000c', 'x') "
                                     "FROM (SELECT 1 UNION ALL SELECT 2)")  # fmt: skip
            rows += 2
            time.sleep(0.0005)  # the group writer's gap between two transactions
            now = wal.stat().st_size if wal.exists() else 0
            shrank += now < size
            size, largest = now, max(largest, now)
    finally:
        engine.dispose()
    return largest, shrank, rows


@pytest.mark.parametrize("limit", [None, 1_000_000])
def test_the_log_starts_over_under_writes_that_never_pause(tmp_path, limit):
    """Passive checkpoints alone never let the log start over while writes keep coming
    (it only grows); with a limit, the checkpointer starts it over, and no commit is lost."""
    path = tmp_path / "b.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER, pad TEXT)")
    engine.dispose()
    checkpointer = WalCheckpointer(str(path), interval=0.02, limit_bytes=limit)
    checkpointer.start()
    try:
        largest, shrank, rows = _write_without_pause(path, 1.5)
    finally:
        checkpointer.stop()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == rows
    assert checkpointer.runs >= 5
    # Each row's 3 KB takes a 4 KB page of its own in the log, so a log that never started
    # over holds more than 4,000 bytes per row written.
    if limit is None:  # the file only grows: it holds every frame written
        assert largest / rows > 4000 and shrank == 0 and checkpointer.restarts == 0
    else:  # started over again and again: a fraction of them
        assert checkpointer.restarts >= 2 and largest / rows < 2000, (largest, rows)


def test_the_log_starts_over_only_when_what_it_holds_is_over_the_limit(tmp_path):
    """A restarted log keeps its file's size: the limit applies to what the log holds since
    it started over, so quiet traffic after a burst makes no restart at every round (each
    one holds the writer back)."""
    path = tmp_path / "q.db"
    engine = make_engine(f"sqlite:///{path}", sqlite_autocheckpoint=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER, pad TEXT)")
    checkpointer = WalCheckpointer(str(path), interval=0.01, limit_bytes=200_000)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for _ in range(100):  # a burst: ~100 pages of log, over the limit
            with engine.begin() as tx:
                tx.exec_driver_sql("INSERT INTO t VALUES (1, printf('%.3000c', 'x'))")
        checkpointer.checkpoint(conn)
        assert checkpointer.restarts == 1
        assert Path(f"{path}-wal").stat().st_size > 200_000  # the file kept its size
        for _ in range(20):  # quiet: a small row between rounds
            with engine.begin() as tx:
                tx.exec_driver_sql("INSERT INTO t VALUES (2, 'y')")
            checkpointer.checkpoint(conn)
        assert checkpointer.restarts == 1, checkpointer.restarts
        for _ in range(100):  # another burst: over the limit again
            with engine.begin() as tx:
                tx.exec_driver_sql("INSERT INTO t VALUES (3, printf('%.3000c', 'x'))")
        checkpointer.checkpoint(conn)
        assert checkpointer.restarts == 2
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 220
    engine.dispose()


def test_a_long_reader_holds_the_writer_back_only_briefly_and_the_restart_backs_off(tmp_path):
    """While a long read keeps its snapshot in the log, the log cannot start over: the
    RESTART checkpoint (which holds the write lock while it waits for readers) gives up
    after RESTART_WAIT_MS and backs off, so commits wait milliseconds, not its 1 s."""
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER, pad TEXT)")
    engine.dispose()
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a snapshot the log must keep
    checkpointer = WalCheckpointer(str(path), interval=0.02, limit_bytes=100_000)
    writer = make_engine(f"sqlite:///{path}", sqlite_autocheckpoint=False)
    checkpointer.start()
    slowest = rows = 0.0
    try:
        deadline = time.monotonic() + 2.5  # a refusal backs off 1 s, then 2 s
        while time.monotonic() < deadline:
            started = time.monotonic()
            with writer.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1, printf('%.3000c', 'x'))")
            slowest = max(slowest, time.monotonic() - started)
            rows += 1
            time.sleep(0.001)
    finally:
        checkpointer.stop()
        reader.execute("COMMIT")
        reader.close()
        writer.dispose()
    assert checkpointer.restarts == 0 and checkpointer.restarts_busy >= 2
    # Backing off: far fewer attempts than rounds.
    assert checkpointer.restarts_busy < checkpointer.runs / 3, (checkpointer.restarts_busy, checkpointer.runs)
    assert slowest < 0.4, slowest  # the 1 s busy timeout would have held commits ~1 s
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == rows


def test_the_checkpointer_survives_errors_and_says_so(tmp_path, caplog):
    """A checkpointer that cannot open its database keeps trying (a dead one would let
    the log grow without bound) and logs the failure once, then its recovery."""
    path = tmp_path / "later" / "c.db"
    checkpointer = WalCheckpointer(str(path), interval=0.02)
    with caplog.at_level("WARNING", logger="pricing.db"):
        checkpointer.start()
        time.sleep(0.2)
        assert checkpointer.runs == 0
        path.parent.mkdir()
        deadline = time.monotonic() + 5
        while checkpointer.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        checkpointer.stop()
    assert checkpointer.runs >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed" in m for m in messages) == 1 and any("work again" in m for m in messages)
