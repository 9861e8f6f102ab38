"""The group writer's CPU per transaction: real quote batches, captured and replayed.

At half load a quote waits mostly for the group commit, and a commit takes about
F + v·n for n quotes (see the systems section of docs/benchmarks.md): the writer's fixed
cost per transaction F and its cost per quote v set the latency. The full systems
benchmark measures them only through the noise of a loaded 2-core host. This one
measures the writer alone, on the same batches every time:

1. the demo database is seeded (``pricing-engine seed-demo`` and a synthetic published
   posterior, as ``benchmarks.systems`` does) and copied;
2. ``--quotes`` quotes (1-3 lines each, 16 at a time) are served in-process with the
   group writer on a thread, and every batch that reaches :func:`api.writer.write_jobs`
   is kept, pickled, exactly as it would travel to the writer process;
3. the batches are replayed on fresh copies of the database, in ``--rounds`` rounds
   whose arms alternate:

   - *engine*: ``write_jobs``, one transaction per captured batch (all the writer
     process does but unpickling);
   - *engine, one quote per transaction*: the same jobs one by one (the writer's regime
     at low load, where F dominates);
   - *baseline*: the same decision rows, converted beforehand, inserted with the bare
     ``sqlite3`` driver, one ``BEGIN IMMEDIATE`` ... ``COMMIT`` per batch (and per quote):
     what the database itself charges for the batch's largest insert.

WAL checkpoints run between transactions, outside the timing (in the service a thread
of the API process makes them). CPU time is the process's (``time.process_time``) over
the transactions, medians over rounds after one
uncounted warm-up round; the ratios divide the engine's by the baseline's of the same
round. SQLite only.

Usage: ``python -m benchmarks.writer [--quotes N] [--rounds R] [--quick] [--no-doc]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import pickle
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import replace_section

BEGIN, END = "<!-- writer:begin -->", "<!-- writer:end -->"
#: Transactions between WAL checkpoints, made outside the timed part: in the service a
#: thread of the API process checkpoints (``PRICING_SQLITE_CHECKPOINT_SECONDS``), not the writer.
CHECKPOINT_EVERY = 50


@dataclass(frozen=True)
class Capture:
    """Batches as the group writer received them, and the database they start from."""

    before: Path
    batches: list[bytes]
    seconds: float
    #: Quotes the writer refused when captured (they decided again and came back).
    refused: int = 0

    def jobs(self, single: bool) -> list[list[Any]]:
        """Fresh (unpickled) jobs per transaction: the captured batches, or one job each."""
        batches = [pickle.loads(b) for b in self.batches]
        return [[job] for batch in batches for job in batch] if single else batches


def capture(workdir: Path, quotes: int, seed: int = 1) -> Capture:
    """Serve ``quotes`` quotes in-process on a fresh demo database and keep every batch.

    Parameters
    ----------
    workdir : Path
        Scratch directory (the database and its copy go there).
    quotes : int
        Quotes to serve, 16 at a time, carts of 1-3 lines (half of one line).

    Returns
    -------
    Capture
        The batches (pickled lists of jobs) and the database as it was before them.
    """
    import httpx

    import api.writer as writer
    from api.app import create_app
    from api.settings import Settings
    from benchmarks.systems import copy_db, demo_catalog, prepare_demo

    db, keys = prepare_demo(workdir)
    before = copy_db(Path(db), workdir / "before.db")
    batches: list[bytes] = []
    refused = [0]
    original = writer.write_jobs

    def keep(sessions: Any, jobs: Sequence[Any], before_commit: Any = None) -> None:
        batches.append(pickle.dumps(list(jobs), protocol=pickle.HIGHEST_PROTOCOL))
        original(sessions, jobs, before_commit)
        refused[0] += sum(bool(getattr(job, "refused", False)) for job in jobs)

    app = create_app(Settings(database_url=f"sqlite:///{db}", writer_process=False))
    segments, skus = demo_catalog()
    rng = random.Random(seed)

    async def serve() -> None:
        headers = {"Authorization": f"Bearer {keys['checkout']}"}
        gate = asyncio.Semaphore(16)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client,
        ):

            async def one() -> None:
                lines = rng.choice((1, 1, 2, 3))
                body = {"customer_id": f"c-{rng.randrange(10**6)}", "segment": rng.choice(segments),
                        "lines": [{"sku": rng.choice(list(skus)), "quantity": 1} for _ in range(lines)]}  # fmt: skip
                async with gate:
                    response = await client.post("/v1/quotes", json=body, headers=headers)
                if response.status_code != 201:
                    raise RuntimeError(f"quote refused: {response.status_code} {response.text[:200]}")

            await asyncio.gather(*(one() for _ in range(quotes)))

    writer.write_jobs = keep
    started = time.perf_counter()
    try:
        asyncio.run(serve())
    finally:
        writer.write_jobs = original
    seconds = time.perf_counter() - started
    _carry_leases(Path(db), before)
    return Capture(before, batches, seconds, refused[0])


def _carry_leases(live: Path, before: Path) -> None:
    """Give the starting copy the budget leases the worker took while serving, unused and
    open, as they were when taken: the replayed offers spend them again."""
    with (
        contextlib.closing(sqlite3.connect(live)) as source,
        contextlib.closing(sqlite3.connect(before)) as target,
    ):
        rows = source.execute(
            "SELECT id, key, worker, budget_minor, offers, granted_at, expires_at FROM promotion_leases"
        ).fetchall()
        with target:
            target.executemany(
                "INSERT OR IGNORE INTO promotion_leases (id, key, worker, budget_minor, offers, used_minor, "
                "used_offers, granted_at, expires_at, closed_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, NULL)",
                rows,
            )


def _fresh(capture: Capture, name: str) -> Path:
    target = capture.before.with_name(name)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copy(capture.before, target)
    return target


def replay_engine(capture: Capture, single: bool) -> tuple[float, int, int]:
    """Replay the captured jobs through :func:`api.writer.write_jobs` on a fresh copy.

    Parameters
    ----------
    capture : Capture
        The batches and the database they start from.
    single : bool
        One quote per transaction instead of the captured batches.

    Returns
    -------
    tuple of (float, int, int)
        CPU seconds spent in the transactions (checkpoints excluded), transactions,
        quotes.
    """
    from api.db import make_engine, make_session_factory
    from api.writer import write_jobs

    db = _fresh(capture, "engine.db")
    engine = make_engine(f"sqlite:///{db}", sqlite_autocheckpoint=False)
    try:
        sessions = make_session_factory(engine)
        transactions = capture.jobs(single)
        seconds = 0.0
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as checkpoints:
            for i, jobs in enumerate(transactions):
                start = time.process_time()
                write_jobs(sessions, jobs)
                seconds += time.process_time() - start
                if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:  # as the app's checkpoint thread does
                    checkpoints.execute("PRAGMA wal_checkpoint(PASSIVE)")
        refused = sum(job.refused for jobs in transactions for job in jobs)
        # The app's own refusals (a quote that must decide again) replay as they were;
        # more than that means the replay writes something else than the app did.
        if refused > capture.refused + len(transactions) // 100:
            raise RuntimeError(f"{refused} quotes refused on replay, {capture.refused} when captured")

        return seconds, len(transactions), sum(len(jobs) for jobs in transactions)
    finally:
        engine.dispose()


def replay_baseline(capture: Capture, single: bool) -> float:
    """Insert the captured decision rows with the bare ``sqlite3`` driver on a fresh copy.

    Parameters
    ----------
    capture : Capture
        The batches and the database they start from.
    single : bool
        One quote's rows per transaction instead of a captured batch's.

    Returns
    -------
    float
        CPU seconds spent in the transactions (rows converted beforehand, checkpoints
        excluded).
    """
    from api.orm import Decision
    from api.services.raw_sql import RawSQL, table_columns

    columns = table_columns(Decision.__table__)
    raw = RawSQL("sqlite")
    transactions = [
        [value for job in jobs for row in raw.driver_rows(columns, job.decisions) for value in row]
        for jobs in capture.jobs(single)
    ]  # fmt: skip
    names = ", ".join(name for name, _ in columns)
    mark = "(" + ",".join("?" * len(columns)) + ")"
    db = _fresh(capture, "baseline.db")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint=0")
        seconds = 0.0
        for i, values in enumerate(transactions):
            start = time.process_time()
            connection.execute("BEGIN IMMEDIATE")
            if values:
                rows = len(values) // len(columns)
                connection.execute(f"INSERT INTO decisions ({names}) VALUES {','.join([mark] * rows)}", values)
            connection.execute("COMMIT")
            seconds += time.process_time() - start
            if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return seconds


@dataclass(frozen=True)
class Round:
    """One round's CPU milliseconds per transaction, for each arm."""

    batch_ms: float
    batch_base_ms: float
    single_ms: float
    single_base_ms: float
    quotes_per_batch: float


def run_round(capture: Capture) -> Round:
    """One round: captured batches and single quotes, each by the engine then the baseline;
    CPU milliseconds per transaction."""
    seconds, batches, quotes = replay_engine(capture, single=False)
    base = replay_baseline(capture, single=False)
    single, singles, _ = replay_engine(capture, single=True)
    single_base = replay_baseline(capture, single=True)
    return Round(1e3 * seconds / batches, 1e3 * base / batches, 1e3 * single / singles,
                 1e3 * single_base / singles, quotes / batches)  # fmt: skip


def table(capture: Capture, rounds: list[Round]) -> list[str]:
    """The report's lines: batch sizes, a markdown table of medians over ``rounds``, and F
    and v of the commit model (ms of CPU) from a line through the two rows."""
    med = statistics.median
    decisions = sum(len(job.decisions) for jobs in capture.jobs(False) for job in jobs)
    quotes = sum(len(jobs) for jobs in capture.jobs(False))
    per_batch = rounds[0].quotes_per_batch
    batch = med(r.batch_ms for r in rounds)
    single = med(r.single_ms for r in rounds)
    # F + v n: from the two regimes (1 quote and per_batch quotes per transaction).
    v = (batch - single) / (per_batch - 1) if per_batch > 1 else float("nan")
    return [
        f"{len(capture.batches):,} captured batches, {quotes:,} quotes, {decisions:,} decision rows "
        f"({per_batch:.1f} quotes a batch); {len(rounds)} rounds",
        "",
        "| transaction | engine, CPU ms | baseline (bare driver, decision rows only), CPU ms | engine ÷ baseline (median of rounds) |",
        "|---|---:|---:|---:|",
        f"| a captured batch ({per_batch:.1f} quotes) | {batch:.3f} | {med(r.batch_base_ms for r in rounds):.3f} "
        f"| {med(r.batch_ms / r.batch_base_ms for r in rounds):.2f} |",
        f"| one quote | {single:.3f} | {med(r.single_base_ms for r in rounds):.3f} "
        f"| {med(r.single_ms / r.single_base_ms for r in rounds):.2f} |",
        "",
        f"Fixed cost per transaction F ≈ {single - v:.3f} ms and cost per quote v ≈ {v:.3f} ms of the writer's "
        "CPU (a line through the two rows).",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quotes", type=int, default=3000, help="quotes to capture (default 3,000)")
    parser.add_argument("--rounds", type=int, default=5, help="replay rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="200 quotes, 2 rounds, prints only")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    quotes, n_rounds = (200, 2) if args.quick else (args.quotes, args.rounds)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="writer-bench-") as tmp:
        print(f"capturing {quotes:,} quotes...", flush=True)
        captured = capture(Path(tmp), quotes)
        run_round(captured)  # warm-up, not counted: first statements, page cache, imports
        rounds = []
        for i in range(n_rounds):
            rounds.append(run_round(captured))
            r = rounds[-1]
            print(f"  round {i + 1}: batch {r.batch_ms:.3f} ms (baseline {r.batch_base_ms:.3f}), "
                  f"one quote {r.single_ms:.3f} ms (baseline {r.single_base_ms:.3f})", flush=True)  # fmt: skip
        lines = table(captured, rounds)
    print("\n".join(lines))
    if args.quick or args.no_doc:
        return 0
    minutes = (time.perf_counter() - started) / 60
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        BEGIN,
        "## The group writer's CPU per transaction, replayed",
        "",
        f"- date: {stamp}; run time {minutes:.1f} min; {platform.machine()}, Python {platform.python_version()}",
        f"- command: `python -m benchmarks.writer --quotes {quotes} --rounds {n_rounds}`",
        "- setting: the demo database (SQLite, WAL, `synchronous=NORMAL`); quotes served in-process 16 at a "
        "time with the writer on a thread, every batch kept as it would travel to the writer process, then "
        "replayed on fresh copies of the database; CPU time of the replaying process (`time.process_time`), "
        "medians over rounds",
        "- baseline: the same decision rows, converted beforehand, inserted with the bare `sqlite3` driver in "
        "one multi-row `INSERT` per transaction: what SQLite itself charges for the batch's largest insert "
        "(the engine also takes idempotency keys, checks sticky quotes, claims limits and leases, and keeps "
        "the per-SKU daily prices and promotion totals)",
        "",
        *lines,
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)
    print("wrote the writer section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
