"""The worker's group writer: nothing shown or acknowledged before it is committed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import threading
import time
import uuid
from typing import ClassVar

import httpx
import pytest
from sqlalchemy import func, select

from api.cli import main as cli
from api.orm import Decision, Outcome, SkuDailyPrices, utcnow
from api.security import Role
from api.services.quote_writes import QuoteJob
from api.writer import GroupWriter, WriteUnavailableError
from tests import writer_hooks as hooks
from tests.servers import servers

C = Role.CHECKOUT


def _count(sessions, model=Decision) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("boom", [hooks.database_gone, hooks.a_bug], ids=["unavailable", "bug"])
def test_a_failing_commit_answers_503_and_shows_no_price(catalog, sessions, boom):
    writer = catalog.client.app.state.pricing.writer

    writer.before_commit = boom
    body = {"customer_id": "c-1", "lines": [{"sku": "TEA-1"}, {"sku": "TEA-2"}]}
    response = catalog.post("/v1/quotes", C, json=body)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "price" not in response.text and "decision_id" not in response.text
    assert _count(sessions) == 0
    with sessions() as session:  # the running totals did not move either
        assert session.scalar(select(func.count()).select_from(SkuDailyPrices)) == 0
    writer.before_commit = None
    quote = catalog.quote("TEA-1", customer="c-1")
    assert _count(sessions) == 1
    # An outcome that cannot be committed is not acknowledged, and a retry later is.
    writer.before_commit = boom
    outcome = {"decision_id": quote["lines"][0]["decision_id"], "converted": False}
    assert catalog.post("/v1/outcomes", C, json=outcome).status_code == 503
    batch = catalog.post("/v1/outcomes/batch", C, json={"outcomes": [outcome]})
    assert batch.status_code == 503 and _count(sessions, Outcome) == 0
    writer.before_commit = None
    assert catalog.post("/v1/outcomes", C, json=outcome).status_code == 201
    assert _count(sessions, Outcome) == 1


def test_a_deadlock_is_retried_and_nothing_of_the_failed_attempt_leaks(catalog, sessions):
    """A deadlock (two workers' writers on the same rows) rolls back one attempt; the
    writer tries again, and what the rolled-back attempt found is not reported."""
    from sqlalchemy.exc import OperationalError

    class DeadlockError(Exception):
        sqlstate = "40P01"

    writer = catalog.client.app.state.pricing.writer
    failures = {"left": 2}

    def deadlock_twice(_session):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("UPDATE ...", {}, DeadlockError("deadlock detected"))

    quote = catalog.quote("TEA-1", customer="d-1")
    writer.before_commit = deadlock_twice
    outcome = {"decision_id": quote["lines"][0]["decision_id"], "converted": True, "quantity": 1,
               "revenue": quote["lines"][0]["final_price"]}  # fmt: skip
    response = catalog.post("/v1/outcomes", C, json=outcome)
    # Created (not "duplicate" from the rolled-back attempt's insert), and stored once.
    assert response.status_code == 201, response.text
    assert _count(sessions, Outcome) == 1 and failures["left"] == 0
    failures["left"] = 1
    again = catalog.quote("TEA-2", customer="d-2")
    writer.before_commit = None
    assert again["lines"][0]["sku"] == "TEA-2" and _count(sessions) == 2


def test_concurrent_quotes_share_transactions_and_all_land(catalog, sessions):
    writer = catalog.client.app.state.pricing.writer
    slow = threading.Event()

    def linger(_session):  # hold each commit a little so that requests pile up behind it
        if not slow.is_set():
            time.sleep(0.02)

    writer.before_commit = linger
    before_batches = writer.batches
    body = {"lines": [{"sku": "TEA-1"}]}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(
            lambda i: catalog.post("/v1/quotes", C, json={**body, "customer_id": f"g{i}"}),
            range(64),
        ))  # fmt: skip
    slow.set()
    writer.before_commit = None
    assert [r.status_code for r in responses] == [201] * 64
    assert _count(sessions) == 64
    assert writer.batches - before_batches < 64  # group commit: fewer transactions than quotes


def test_one_bad_job_in_a_batch_fails_alone(catalog, sessions):
    """A job that violates a constraint is retried alone and fails; the others commit."""
    writer = GroupWriter(sessions)
    gate = threading.Event()
    writer.before_commit = lambda _s: gate.wait(5)
    now = utcnow()

    def job(sku: str) -> QuoteJob:
        row = {"id": uuid.uuid4(), "quote_id": uuid.uuid4(), "line_no": 0, "created_at": now,
               "expires_at": now, "customer_id": "x", "segment": "default", "sku": sku,
               "quantity": 1, "currency": "USD", "list_price_minor": 1000, "price_minor": 1000,
               "unit_cost_minor": 400, "propensity": 1.0, "personalized": False,
               "policy": "test", "context": {}, "guardrail_trail": {}}  # fmt: skip
        return QuoteJob([row], [], [], [], [(sku, now, 1000, 1000)], {}, now, sku)

    first = writer.submit(job("TEA-1"))  # blocks in its commit until the gate opens
    time.sleep(0.1)
    good, bad = writer.submit(job("TEA-2")), writer.submit(job("NOPE"))
    time.sleep(0.1)
    gate.set()
    assert first.result(10) == "TEA-1" and good.result(10) == "TEA-2"
    with pytest.raises(WriteUnavailableError):
        bad.result(10)
    writer.stop()
    assert _count(sessions) == 2


# --------------------------------------------------------------------------- kill -9
def _descendants(pid: int) -> list[int]:
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        with contextlib.suppress(OSError), open(f"/proc/{p}/task/{p}/children") as children:
            found = [int(c) for c in children.read().split()]
            out += found
            frontier += found
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("writer_process", ["0", "1"], ids=["writer-thread", "writer-process"])
def test_kill_9_during_a_load_keeps_every_decision_a_client_received(
    db_url, sessions, capsys, tmp_path, writer_process
):
    import re

    assert cli(["seed-demo", "--database-url", db_url, "--keys-file", str(tmp_path / "keys.json")]) == 0
    key = re.search(r"^\s+checkout\s+(pe_\S+)$", capsys.readouterr().out, re.M)
    assert key is not None
    headers = {"Authorization": f"Bearer {key.group(1)}"}
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int, base: str) -> None:
        with httpx.Client(timeout=5) as http:
            i = 0
            while not stop.is_set() and i < 2000:
                i += 1
                body = {"customer_id": f"k{n}-{i}", "lines": [{"sku": "COF-001"}, {"sku": "TEA-002"}]}
                try:
                    response = http.post(f"{base}/v1/quotes", json=body, headers=headers)
                except httpx.TransportError:
                    return  # the server died under us
                if response.status_code == 201:
                    with lock:
                        received.extend(line["decision_id"] for line in response.json()["lines"])

    with servers(db_url, 1, PRICING_POLICY="list", PRICING_WRITER_PROCESS=writer_process) as [
        (base, process)
    ]:
        threads = [threading.Thread(target=client, args=(n, base)) for n in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(received) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = _descendants(process.pid)  # the writer process, if any
        assert len(children) == (writer_process == "1"), children
        process.send_signal(signal.SIGKILL)  # in the middle of the load
        process.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        deadline = time.monotonic() + 10  # a writer process leaves with its server
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(c) for c in children), "the writer process outlived its server"
    assert len(received) >= 200
    with sessions() as session:
        ids = {str(i) for i in session.scalars(select(Decision.id))}
    missing = set(received) - ids
    assert not missing, f"{len(missing)} decisions a client received are not in the log"


class _Noted:
    """A job that only notes that it was written, and in which batch."""

    kind = "noted"
    rows = 1
    batches: ClassVar[list[int]] = []

    def __init__(self, tag: int) -> None:
        self.tag = tag

    @classmethod
    def write_batch(cls, _session, jobs) -> None:
        cls.batches.append(len(jobs))

    def result(self) -> int:
        return self.tag

    def committed(self) -> None:
        pass

    def failed(self, _error) -> None:
        pass


def test_the_writer_lingers_only_under_load(sessions, monkeypatch):
    """An idle writer commits a lone job at once; after a batch with company it lets the
    next batch fill for ``linger_seconds`` (one sleep, not a wait per job)."""
    import api.writer as writer_module

    slept: list[float] = []
    release = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        release.wait(5)  # jobs queued meanwhile join this batch
        real_sleep(0)

    monkeypatch.setattr(writer_module.time, "sleep", sleep)
    _Noted.batches = []
    writer = GroupWriter(sessions, linger_seconds=0.25)
    gate = threading.Event()
    original = _Noted.write_batch.__func__

    def gated(cls, session, jobs):
        gate.wait(5)  # hold the first batch so that the next jobs queue up behind it
        original(cls, session, jobs)

    monkeypatch.setattr(_Noted, "write_batch", classmethod(gated))
    gate.set()
    try:
        assert writer.write(_Noted(0), timeout=10) == 0  # idle: no linger
        gate.clear()
        first = writer.submit(_Noted(1))
        while writer._queue.qsize():  # the writer took job 1 and waits on the gate
            real_sleep(0.001)
        queued = [writer.submit(_Noted(i)) for i in (2, 3)]
        gate.set()
        assert [f.result(10) for f in (first, *queued)] == [1, 2, 3]
        assert slept == []  # batches of 1 then 2: nothing lingered yet
        lingering = writer.submit(_Noted(4))  # after a batch with company: it lingers
        while not slept:
            real_sleep(0.001)
        late = writer.submit(_Noted(5))
        release.set()
        assert (lingering.result(10), late.result(10)) == (4, 5)
        assert slept == [0.25]
        assert _Noted.batches == [1, 1, 2, 2]
    finally:
        release.set()
        gate.set()
        writer.stop()
