"""The group writer's transactions in a child process (``PRICING_WRITER_PROCESS``, the
served default): the same promises as on the writer thread.

The suite's other apps write on the thread (tests/conftest.py); here every app of the
module runs a writer process, and a selection of the quote, outcome, idempotency and
promotion tests runs again against it (their functions, collected here with this module's
``client`` fixture), with tests of what is new: a failed commit in the child, a child
that dies, a child that outlives nobody.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.orm import Decision
from api.security import Role
from api.settings import load_settings
from api.writer import GroupWriter
from tests import writer_hooks as hooks
from tests.api import (
    test_group_writer,
    test_idempotency,
    test_outcomes,
    test_promotions_api,
    test_quotes,
)

C = Role.CHECKOUT


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """An app on the test database whose writer runs in a child process."""
    app = create_app(load_settings(database_url=db_url, writer_process=True))
    with TestClient(app) as test_client:
        yield test_client


# The same behaviour through the child (each function runs here with this module's client).
test_quotes_are_logged = test_quotes.test_quote_prices_every_line_at_list_price_and_logs_each_decision
test_unknown_skus_log_nothing = test_quotes.test_quote_names_every_unknown_or_inactive_sku_and_logs_nothing
test_another_workers_decision_is_repeated = test_quotes.test_a_decision_made_by_another_worker_is_repeated_not_doubled
test_concurrent_quotes_of_one_customer = test_quotes.test_concurrent_quotes_of_one_customer_make_one_decision_per_sku
test_outcome_then_identical_retry = test_outcomes.test_outcome_is_created_then_an_identical_retry_returns_the_original
test_conflicting_outcome = test_outcomes.test_a_conflicting_second_outcome_is_409_and_changes_nothing
test_outcome_batch_statuses = test_outcomes.test_batch_reports_each_item_and_stores_only_the_good_ones
test_idempotent_retry = test_idempotency.test_a_retry_with_the_same_key_returns_the_same_quote_and_logs_nothing_more
test_idempotent_concurrent = test_idempotency.test_concurrent_requests_with_one_key_make_one_quote
test_caps_and_customer_limits = test_promotions_api.test_redemption_cap_and_per_customer_limit_hold
test_budgets_settle = test_promotions_api.test_outcomes_settle_budgets_and_redemptions
test_holds_swept = test_promotions_api.test_expired_holds_are_released_through_the_group_writer_only_when_a_read_finds_them
test_leases_written = test_promotions_api.test_leases_are_granted_and_returned_in_the_group_writers_transactions
test_keys_purged = test_idempotency.test_the_served_purge_runs_in_the_group_writer_in_bounded_passes
# A commit that fails in the child: 503, nothing shown, nothing of it stored.
test_a_failing_commit_shows_nothing = test_group_writer.test_a_failing_commit_answers_503_and_shows_no_price


def _writer(api) -> GroupWriter:
    writer: GroupWriter = api.client.app.state.pricing.writer
    assert writer._process is not None, "the app's writer should run in a child process"
    return writer


def _quote_through_a_restart(api, sku: str, customer: str) -> dict:
    """Quote until it goes through: the batch that finds the child dead starts a new one,
    and on a busy machine that may outlast the request's wait for its commit (then 503,
    nothing shown)."""
    deadline = time.monotonic() + 60
    while True:
        response = api.post("/v1/quotes", C, json={"customer_id": customer, "lines": [{"sku": sku}]})
        if response.status_code == 201:
            return response.json()
        assert response.status_code == 503 and "decision_id" not in response.text, response.text
        assert time.monotonic() < deadline, "no writer process came back within a minute"
        time.sleep(0.2)


def _count(sessions, model=Decision) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_child_that_dies_mid_batch_costs_that_batch_a_503_and_the_next_one_starts_a_child(
    catalog, sessions
):
    writer = _writer(catalog)
    process = writer._process
    assert process is not None
    first = process.pid
    assert first is not None and first != os.getpid()
    writer.before_commit = hooks.slow
    answers: list[int] = []
    request = threading.Thread(target=lambda: answers.append(
        catalog.post("/v1/quotes", C, json={"customer_id": "k", "lines": [{"sku": "TEA-1"}]}).status_code
    ))  # fmt: skip
    request.start()
    time.sleep(1.0)  # the batch is in the child's transaction
    os.kill(first, signal.SIGKILL)
    request.join(30)
    assert answers == [503]
    writer.before_commit = None
    assert _count(sessions) == 0  # killed before its commit: nothing, and nothing shown
    quote = _quote_through_a_restart(catalog, "TEA-2", "k")
    assert process.pid not in (None, first) and process.starts == 2
    with sessions() as session:
        assert str(session.scalar(select(Decision.id))) == quote["lines"][0]["decision_id"]


def test_a_child_killed_between_batches_is_replaced_before_the_next_one(catalog, sessions):
    writer = _writer(catalog)
    process = writer._process
    assert process is not None and process.pid is not None
    first = process.pid
    os.kill(first, signal.SIGKILL)
    # An idle writer notices within about a second and starts another child by itself.
    deadline = time.monotonic() + 60
    while not (process.alive() and process.pid != first) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.alive() and process.pid != first and process.starts == 2
    catalog.quote("TEA-1", customer="after")
    assert _count(sessions) == 1 and process.starts == 2
    metrics = catalog.get("/metrics").text
    assert "pricing_writer_process_starts_total 2.0" in metrics
    # The child's own time per batch, beside the writer's (which adds the crossing).
    inside = float(metrics.split("pricing_writer_process_transaction_seconds_count ")[1].split()[0])
    total = float(metrics.split("pricing_writer_transaction_seconds_count ")[1].split()[0])
    assert inside == total >= 1
    child_sum = float(metrics.split("pricing_writer_process_transaction_seconds_sum ")[1].split()[0])
    writer_sum = float(metrics.split("pricing_writer_transaction_seconds_sum ")[1].split()[0])
    assert 0 < child_sum < writer_sum


def test_the_child_ends_with_the_app_and_when_its_parent_is_gone(db_url):
    app = create_app(load_settings(database_url=db_url, writer_process=True))
    with TestClient(app):
        process = app.state.pricing.writer._process
        assert process is not None
        child = process._process
        assert child is not None and process.alive()
    assert child.wait(10) == 0
    # A parent killed with SIGKILL cannot stop it: the child leaves when its pipe closes.
    # (The server-level kill -9 test checks that no writer outlives its server.)


def test_an_outcome_job_crosses_to_the_child_and_back_exactly():
    """The wire form (plain values) carries every field the writer reads, and the report
    carries the stored row back to the microsecond."""
    import pickle
    import uuid
    from datetime import UTC, datetime
    from decimal import Decimal

    from api.schemas.outcomes import OutcomeIn
    from api.services.outcomes import OutcomeJob, _Stored, outcome_items

    when = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    sent = [
        OutcomeIn(decision_id=uuid.uuid4(), converted=True, quantity=2, revenue=Decimal("19.98"),
                  currency="USD", occurred_at=when, discount=Decimal("1.25")),
        OutcomeIn(decision_id=uuid.uuid4(), converted=False),
    ]  # fmt: skip
    job = OutcomeJob(outcome_items(sent), on_commit=print)
    copy = pickle.loads(pickle.dumps(job))
    assert copy.on_commit is None
    for item, original in zip(copy.items, sent, strict=True):
        for name in ("decision_id", "converted", "quantity", "revenue", "currency", "occurred_at", "discount"):
            assert getattr(item.data, name) == getattr(original, name), name
    stored = _Stored(uuid.uuid4(), sent[0].decision_id, True, 2, 1998, "USD", when,
                     datetime(2026, 12, 7, 1, 2, 4, 7, tzinfo=UTC), 125, False)  # fmt: skip
    copy.items[0].status, copy.items[0].stored = "created", stored
    copy.items[1].status, copy.items[1].error, copy.items[1].field = "invalid", "bad", "currency"
    job.absorb(pickle.loads(pickle.dumps(copy.report())))
    assert job.items[0].status == "created" and job.items[0].stored == stored
    assert (job.items[1].status, job.items[1].error, job.items[1].field) == ("invalid", "bad", "currency")
    assert job.items[1].stored is None


def test_the_child_imports_only_the_write_path():
    """No web framework, no optimiser, no PyMC in the writer process (memory: each worker
    has one)."""
    import subprocess
    import sys

    probe = ("import sys, api.writer_process, api.services.outcomes, api.services.quote_writes, "
             "api.hot.maintenance, api.services.idempotency, api.services.erasure; "
             "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'scipy', 'pymc', 'pytensor') "
             "if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_child_that_cannot_start_is_retried_with_a_back_off(sessions):
    """A writer process that dies before it is ready (here: an engine it cannot make) is a
    WriteUnavailableError (503 for the batch), and an idle writer does not spawn one every
    second: it waits 2, 4 ... 60 s between tries."""
    from api.db import EngineRecipe
    from api.writer import WriteUnavailableError
    from api.writer_process import WriterProcess

    broken = WriterProcess(EngineRecipe("sqlite:///never.db", {"sqlite_synchronous": "SOMETIMES"}))
    with pytest.raises(WriteUnavailableError, match="did not start"):
        broken.start()
    writer = GroupWriter(sessions, process=broken)
    writer._revive()
    assert broken.starts == 2 and not broken.alive()
    assert writer._revive_delay == 2.0
    writer._revive()  # within the back-off: no new child
    assert broken.starts == 2
    writer._revive_at = 0.0
    writer._revive()
    assert broken.starts == 3 and writer._revive_delay == 4.0


def test_the_linger_defaults_to_none_with_a_writer_process(catalog, db_url):
    """Unset, ``PRICING_WRITER_LINGER_SECONDS`` is 0 with the writer process and 1 ms on the
    thread; a value that is set is used either way."""
    assert _writer(catalog).linger == 0.0
    app = create_app(load_settings(database_url=db_url, writer_process=False))
    assert app.state.pricing.writer.linger == 0.001
    app = create_app(load_settings(database_url=db_url, writer_process=True, writer_linger_seconds=0.002))
    assert app.state.pricing.writer.linger == 0.002



def test_the_event_loop_carries_the_batches_and_blocking_callers_go_through_it(catalog, sessions):
    """Served, the worker's event loop owns the writer process's socket: no writer thread,
    and a job written from another thread (a CLI command, a sync route) is written by the
    loop's batches too, while a blocking write on the loop itself is refused, not hung."""
    import asyncio

    writer = _writer(catalog)
    assert writer.loop is not None and writer._thread is None
    assert not [t for t in threading.enumerate() if t.name == "group-writer"]
    quote = catalog.quote("TEA-1", customer="loop")
    assert _count(sessions) == 1 and quote["lines"][0]["decision_id"]

    # A job written from this (blocking) thread is carried and settled by the loop.
    assert writer.write(hooks.Probe(), timeout=30) == writer._loop_thread
    assert writer._loop_thread != threading.get_ident()
    # A real job from another thread: committed through the loop.
    body = {"customer_id": "from-a-thread", "lines": [{"sku": "TEA-2"}]}
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(catalog.post("/v1/quotes", C, json=body).status_code))
    worker.start()
    worker.join(30)
    assert answers == [201] and _count(sessions) == 2

    async def blocking_on_the_loop() -> str:
        try:
            writer.write(hooks.Probe(), timeout=1)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    loop = writer.loop
    assert loop is not None
    assert "write_async" in asyncio.run_coroutine_threadsafe(blocking_on_the_loop(), loop).result(10)


def test_the_child_writes_every_batch_that_has_arrived_in_one_transaction(sessions):
    """Batches that reach the child together share one commit (up to ``max_rows``), each
    gets its own answer, and the API process counts the shared commit once; a bad job in
    a joint transaction fails alone while the others are committed."""
    import pickle

    from api.latency import LatencyCounts
    from api.writer_process import WriterProcess, _groups, _Transactions

    child = _Transactions(sessions)
    first, second = [hooks.Probe(), hooks.Probe()], [hooks.Probe()]
    replies = child.answer([(first, None, 100), (second, None, 100)])
    assert [r[0] for r in replies] == ["ok", "ok"] and child.count == 1
    assert replies[0][2] == replies[1][2] and len(replies[0][1]) == 2
    # The row cap splits a run of batches into transactions of at most max_rows rows.
    runs = _groups([([hooks.Probe()] * 3, None, 4), ([hooks.Probe()] * 2, None, 4), ([hooks.Probe()], None, 4)])
    assert [len(g) for g in runs] == [1, 2]
    # A bug in one job: the joint transaction fails, then each job is written alone.
    mixed = child.answer([([hooks.Probe(), hooks.Broken()], None, 100), ([hooks.Probe()], None, 100)])
    assert mixed[0][0] == mixed[1][0] == "each"
    assert [status for status, _ in mixed[0][1]] == ["ok", "failed"] and "a bug" in mixed[0][1][1][1]
    assert [status for status, _ in mixed[1][1]] == ["ok"]
    assert child.count == 1 + 2  # the two jobs that committed alone
    # The API process's side: a commit shared by two answers is counted once.
    parent = WriterProcess.__new__(WriterProcess)
    parent.transaction_seconds = LatencyCounts()
    parent._last_commit = 0
    assert len(parent.answer(first, pickle.dumps(replies[0]))[1]) == 1
    assert parent.answer(second, pickle.dumps(replies[1]))[1] == []  # the same commit
    assert sum(parent.transaction_seconds.counts) == 1
    failures, _ = parent.answer([hooks.Probe(), hooks.Broken()], pickle.dumps(mixed[0]))
    assert list(failures) == [1] and "a bug" in str(failures[1])


def test_the_writer_thread_stays_when_asked(db_url):
    """``PRICING_WRITER_ON_LOOP=false``: the thread carries the batches, as before."""
    app = create_app(load_settings(database_url=db_url, writer_process=True, writer_on_loop=False))
    with TestClient(app) as client:
        writer = app.state.pricing.writer
        assert writer.loop is None and writer._thread is not None and writer._thread.is_alive()
        del client


def test_frames_carry_messages_of_any_size_and_report_a_closed_peer():
    import socket

    from api.writer_process import _Frames

    left, right = socket.socketpair()
    a, b = _Frames(left), _Frames(right)
    messages = [b"", b"x", bytes(range(256)) * 300, b"y" * (3 << 20)]  # up to 3 MB: many recvs
    sender = threading.Thread(target=lambda: [a.send_bytes(m) for m in messages])
    sender.start()
    assert [b.recv_bytes() for _ in messages] == messages
    sender.join()
    # A header split from its body, then a peer gone mid-message.
    left.sendall(b"\x00\x00")
    left.sendall(b"\x00\x05ab")
    assert b.poll(1.0)
    left.close()
    with pytest.raises(EOFError):
        b.recv_bytes()
    b.close()


def test_frames_that_arrive_together_are_read_one_by_one():
    import socket

    from api.writer_process import _Frames

    left, right = socket.socketpair()
    right.settimeout(5.0)  # a message lost in a buffer fails the test instead of hanging it
    a, b = _Frames(left), _Frames(right)
    for message in (b"batch", b"", b"stop"):  # e.g. a batch and the stop right behind it
        a.send_bytes(message)
    assert [b.recv_bytes(), b.recv_bytes()] == [b"batch", b""]
    assert b.poll(0.0)
    assert b.recv_bytes() == b"stop"
    left.close()
    with pytest.raises(EOFError):
        b.recv_bytes()
    b.close()
