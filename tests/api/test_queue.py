"""Background jobs on the PostgreSQL task queue (procrastinate): installed by ``migrate``,
run by any number of ``pricing-engine worker`` processes, locked and de-duplicated; and in
production mode, two API workers and two queue workers serve, learn and refit together."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text, update

from api.cli import main
from api.db import make_engine
from api.migrate import QUEUE_TABLE
from api.orm import Decision, ModelSnapshot, Product, Segment, utcnow
from api.queue import REFIT_LOCK, WEIGHTS_LOCK, build_queue, defer, run_worker
from api.security import Role
from api.services.keys import create_key
from api.settings import load_settings
from tests.conftest import _create_postgres_database
from tests.factories import log_decisions, publish, synthetic_posterior
from tests.servers import servers

#: The queue lives in PostgreSQL: these tests run on its test database only.
postgresql = pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)


@pytest.fixture
def queue_url(db_url: str) -> Iterator[str]:
    """The PostgreSQL test database with the queue installed and empty."""
    assert main(["migrate", "--database-url", db_url]) == 0
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_periodic_defers"))
        conn.execute(text("DELETE FROM procrastinate_jobs"))
    engine.dispose()
    yield db_url


def _jobs(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT task_name, status FROM procrastinate_jobs ORDER BY id"))
        out = [(r[0], r[1]) for r in rows]
    engine.dispose()
    return out


@postgresql
def test_migrate_installs_the_queue_once(capsys, migrated_url):
    url, drop = _create_postgres_database()
    try:
        assert main(["migrate", "--database-url", url]) == 0
        assert "job queue (procrastinate): installed" in capsys.readouterr().out
        assert main(["migrate", "--database-url", url]) == 0
        assert "job queue (procrastinate): present" in capsys.readouterr().out
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {QUEUE_TABLE}")).scalar() == 0
        engine.dispose()
    finally:
        drop()


@postgresql
def test_the_tasks_carry_their_locks_and_retries(queue_url):
    tasks = build_queue(load_settings(database_url=queue_url)).tasks
    assert set(tasks) >= {"pricing.apply_outcomes", "pricing.refit", "pricing.import_history",
                          "pricing.export_feedback"}  # fmt: skip
    assert tasks["pricing.apply_outcomes"].lock == WEIGHTS_LOCK
    assert tasks["pricing.refit"].lock == REFIT_LOCK
    assert tasks["pricing.refit"].queueing_lock == "pricing.refit"
    assert tasks["pricing.apply_outcomes"].retry_strategy.max_attempts == 3


@postgresql
def test_a_waiting_refit_is_not_queued_twice(queue_url, capsys):
    assert main(["refit", "--queue", "--database-url", queue_url]) == 0
    assert "queued as job" in capsys.readouterr().out
    assert main(["refit", "--queue", "--database-url", queue_url]) == 0
    assert "already waiting" in capsys.readouterr().out
    assert _jobs(queue_url) == [("pricing.refit", "todo")]


@postgresql
def test_a_queue_worker_applies_new_outcomes_to_the_served_weights(queue_url, catalog, sessions):
    snapshot = publish(sessions, synthetic_posterior(), watermark=utcnow() - timedelta(minutes=5))
    log_decisions(sessions, [("default", "TEA-1", 900, 1000, True),
                             ("default", "TEA-1", 1000, 1000, False)] * 10)  # fmt: skip
    settings = load_settings(database_url=queue_url)
    assert defer(settings, "pricing.apply_outcomes") is not None
    assert defer(settings, "pricing.apply_outcomes") is None  # one waiting at most
    run_worker(settings, wait=False)
    with sessions() as session:
        row = session.get(ModelSnapshot, snapshot)
        assert row.applied_outcomes == 20 and row.weights_seq == 1
    assert all(status == "todo" for _, status in _jobs(queue_url))  # done ones deleted; none failed


@postgresql
def test_export_feedback_runs_as_a_job(queue_url, catalog, sessions, tmp_path, capsys):
    log_decisions(sessions, [("default", "TEA-1", 900, 1000, True)] * 3)
    out = tmp_path / "feedback"
    assert main(["export-feedback", "--queue", str(out), "--database-url", queue_url]) == 0
    run_worker(load_settings(database_url=queue_url), wait=False)
    assert (out / "feedback.npz").exists() and (out / "feedback.json").exists()


def test_the_queue_needs_postgresql(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert main(["refit", "--queue", "--database-url", url]) == 2
    assert "--queue needs PostgreSQL" in capsys.readouterr().err


# ------------------------------------------------------------------ production mode
@contextlib.contextmanager
def _queue_workers(url: str, n: int, **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    environment = {**os.environ, "PRICING_DATABASE_URL": url, **env}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--name", f"q{i}"], env=environment
        )
        for i in range(n)
    ]
    try:
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)


@pytest.mark.slow
@postgresql
def test_two_api_workers_and_two_queue_workers_serve_learn_and_refit(queue_url, sessions):
    """Production mode on PostgreSQL: quotes and outcomes through two API workers, the
    outcomes applied by the queue workers, a refit run by one of them and picked up by
    both API workers without a restart."""
    with sessions() as session, session.begin():
        session.add_all([Segment(key="default", name="default"), Segment(key="loyalty", name="loyalty")])
        session.add_all([Product(sku=s, name=s, category="tea", list_price_minor=1000,
                                 unit_cost_minor=400, currency="USD") for s in ("TEA-1", "TEA-2")])  # fmt: skip
    with sessions() as session:
        key = create_key(session, name="checkout", role=Role.CHECKOUT, actor=None).key
    earlier = utcnow() - timedelta(minutes=10)
    history = [(seg, sku, price, 1000, (price + n) % 3 != 0)
               for seg in ("default", "loyalty") for sku in ("TEA-1", "TEA-2")
               for n, price in enumerate((800, 900, 1000, 1100) * 25)]  # fmt: skip
    log_decisions(sessions, history, recorded_at=earlier)
    first = publish(sessions, synthetic_posterior(), watermark=earlier + timedelta(seconds=1))
    job_env = {"PRICING_UPDATER_INTERVAL_SECONDS": "1", "PRICING_FIT_METHOD": "advi",
               "PRICING_FIT_DRAWS": "500", "PRICING_REFIT_EVERY_SECONDS": "86400"}  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    with servers(queue_url, n=2, PRICING_SNAPSHOT_POLL_SECONDS="0.5") as api, \
            _queue_workers(queue_url, 2, **job_env):  # fmt: skip
        bases = [base for base, _ in api]
        for n in range(40):
            base = bases[n % 2]
            quote = httpx.post(f"{base}/v1/quotes", headers=headers, timeout=30, json={
                "customer_id": f"c-{n}", "segment": ("default", "loyalty")[n % 2],
                "lines": [{"sku": "TEA-1"}, {"sku": "TEA-2"}]})  # fmt: skip
            assert quote.status_code == 201, quote.text
            outcomes = [{"decision_id": line["decision_id"], "converted": n % 3 == 0,
                         "quantity": int(n % 3 == 0),
                         "revenue": line["final_price"] if n % 3 == 0 else "0.00"}
                        for line in quote.json()["lines"]]  # fmt: skip
            done = httpx.post(f"{bases[(n + 1) % 2]}/v1/outcomes/batch", headers=headers,
                              json={"outcomes": outcomes}, timeout=30)  # fmt: skip
            assert done.status_code == 200 and done.json()["counts"] == {"created": 2}

        def applied() -> int:
            with sessions() as session:
                return int(session.get(ModelSnapshot, first, populate_existing=True).applied_outcomes)

        _wait(lambda: applied() == 80, 60, "the queue workers to apply the 80 outcomes")
        assert main(["refit", "--queue", "--database-url", queue_url]) == 0

        def newest() -> ModelSnapshot | None:
            with sessions() as session:
                return session.scalar(select(ModelSnapshot).where(ModelSnapshot.id > first)
                                      .order_by(ModelSnapshot.id.desc()).limit(1))  # fmt: skip

        _wait(lambda: newest() is not None, 240, "the refit job")
        fit = newest()
        assert fit is not None and fit.status == "published", fit.message
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(ModelSnapshot)
                                  .where(ModelSnapshot.id > first)) == 1  # one refit, not two  # fmt: skip

        def served_everywhere() -> bool:
            versions = set()
            for n, base in enumerate(bases):
                quote = httpx.post(f"{base}/v1/quotes", headers=headers, timeout=30, json={
                    "customer_id": f"after-{time.monotonic()}-{n}", "lines": [{"sku": "TEA-1"}]})  # fmt: skip
                decision = uuid.UUID(quote.json()["lines"][0]["decision_id"])
                with sessions() as session:
                    versions.add(session.get(Decision, decision).model_version)
            return versions == {str(fit.id)}

        _wait(served_everywhere, 30, "both API workers to serve the new snapshot")
    with sessions() as session, session.begin():
        session.execute(update(ModelSnapshot).values(ess=None))  # leave nothing due
