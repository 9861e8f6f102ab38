"""Crash safety: a load of quotes and outcomes while API workers and job workers are killed
with SIGKILL at random moments and restarted.

Afterwards every acknowledged outcome is stored exactly once, every decision a client
received is in the log, no outcome is applied to a posterior twice, and no promotion
lease keeps budget beyond its expiry. Clients behave as checkout should: a quote is
retried on another worker with the same ``Idempotency-Key``, an outcome is retried until
acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.hot.offer_book import sweep
from api.orm import (
    AppliedDecision,
    Decision,
    ModelSnapshot,
    Outcome,
    PromotionLease,
    PromotionUsage,
    utcnow,
)
from tests.api.test_multiworker import _setup
from tests.api.test_promotions_api import strong_promotion_posterior
from tests.factories import publish
from tests.servers import free_port

LEASE_SECONDS = 3.0
LOAD_SECONDS = float(os.environ.get("PRICING_CHAOS_SECONDS", "15"))


class Fleet:
    """API workers on fixed ports and job workers, each restartable after a SIGKILL."""

    def __init__(self, db_url: str, api: int, jobs: int, env: dict[str, str]) -> None:
        self.env = {**os.environ, "PRICING_DATABASE_URL": db_url, "PRICING_LOG_LEVEL": "warning",
                    **env}  # fmt: skip
        self.ports = [free_port() for _ in range(api)]
        self.api: list[subprocess.Popen[bytes]] = [self._serve(p) for p in self.ports]
        self.jobs: list[subprocess.Popen[bytes]] = [self._worker(i) for i in range(jobs)]
        self.kills: Counter[str] = Counter()

    @property
    def bases(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def _serve(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "serve"],
                                env={**self.env, "PRICING_PORT": str(port)})  # fmt: skip

    def _worker(self, n: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "worker", "--name", f"chaos{n}"],
                                env=self.env)  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for base in self.bases:
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{base} did not become ready")
                time.sleep(0.1)

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a random process and start it again."""
        kind = rng.choice(["api", "api", "jobs"]) if self.jobs else "api"
        group = self.api if kind == "api" else self.jobs
        index = rng.randrange(len(group))
        group[index].send_signal(signal.SIGKILL)
        group[index].wait(timeout=10)
        self.kills[kind] += 1
        group[index] = self._serve(self.ports[index]) if kind == "api" else self._worker(index)

    def stop(self) -> None:
        for process in self.api + self.jobs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.api + self.jobs:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _retrying(
    http: httpx.Client, bases: list[str], rng: random.Random, path: str, body: dict[str, Any],
    headers: dict[str, str], attempts: int = 60,
) -> httpx.Response | None:  # fmt: skip
    """POST to a random worker until a non-5xx answer (workers die and come back); None if
    none answers."""
    for _ in range(attempts):
        try:
            response = http.post(f"{rng.choice(bases)}{path}", json=body, headers=headers)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if response.status_code < 500:
            return response
        time.sleep(float(response.headers.get("Retry-After", "0.1")))
    return None


@pytest.mark.slow
def test_sigkill_of_api_and_job_workers_under_load_loses_and_doubles_nothing(db_url, sessions, backend):
    key = _setup(sessions)
    snapshot = publish(sessions, strong_promotion_posterior(),
                       watermark=utcnow() - timedelta(minutes=1))  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    received: set[str] = set()
    acknowledged: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    env = {"PRICING_PROMOTION_LEASE_SECONDS": str(LEASE_SECONDS), "PRICING_REFRESH_SECONDS": "0.2",
           "PRICING_SWEEP_SECONDS": "0.5", "PRICING_UPDATER_INTERVAL_SECONDS": "1",
           "PRICING_REFIT_ESS_FRACTION": "0.001", "PRICING_REFIT_EVERY_SECONDS": "86400",
           "PRICING_QUEUE_STALLED_SECONDS": "3"}  # fmt: skip
    fleet = Fleet(db_url, api=2, jobs=2 if backend == "postgresql" else 1, env=env)
    try:
        fleet.wait_ready()

        def client(n: int) -> None:
            rng = random.Random(n)
            with httpx.Client(timeout=10) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    idempotency = str(uuid.uuid4())
                    body = {"customer_id": f"c{n}-{i}",
                            "lines": [{"sku": rng.choice(["TEA-1", "TEA-2"])}]}  # fmt: skip
                    quote = _retrying(http, fleet.bases, rng, "/v1/quotes", body,
                                      {**headers, "Idempotency-Key": idempotency})  # fmt: skip
                    if quote is None or quote.status_code != 201:
                        continue
                    lines = quote.json()["lines"]
                    with lock:
                        received.update(line["decision_id"] for line in lines)
                    for line in lines:
                        bought = rng.random() < 0.4
                        outcome = {"decision_id": line["decision_id"], "converted": bought,
                                   "quantity": int(bought),
                                   "revenue": line["final_price"] if bought else "0.00"}  # fmt: skip
                        done = _retrying(http, fleet.bases, rng, "/v1/outcomes", outcome, headers)
                        if done is not None and done.status_code in (200, 201):
                            with lock:
                                acknowledged[line["decision_id"]] = outcome

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        rng = random.Random(2026)
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 1.5))
            fleet.kill_one(rng)
        fleet.wait_ready()
        time.sleep(1.0)  # some load on the restarted fleet
        stop.set()
        for t in threads:
            t.join(timeout=120)
        # Every process that was killed was restarted; let them apply and release.
        time.sleep(LEASE_SECONDS * 2 + 2)
    finally:
        stop.set()
        fleet.stop()
    assert sum(fleet.kills.values()) >= 5, fleet.kills
    assert len(received) >= 50 and len(acknowledged) >= 50, (len(received), len(acknowledged))
    # One more pass of the jobs, undisturbed, then a sweep of expired leases.
    if backend == "postgresql":
        from api.queue import defer
        from api.settings import load_settings

        defer(load_settings(database_url=db_url), "pricing.apply_outcomes")
    assert subprocess.run([sys.executable, "-m", "api.cli", "worker", "--once"],
                          env=fleet.env, timeout=300).returncode == 0  # fmt: skip
    sweep(sessions)

    with sessions() as session:
        logged = {str(i) for i in session.scalars(select(Decision.id))}
        stored = Counter(str(d) for d in session.scalars(select(Outcome.decision_id)))
        outcomes = {str(o.decision_id): o for o in session.scalars(select(Outcome))}
        applied = Counter(str(d) for d in session.scalars(
            select(AppliedDecision.decision_id).where(AppliedDecision.snapshot_id == snapshot)))  # fmt: skip
        row = session.get(ModelSnapshot, snapshot)
        open_leases = session.scalar(select(func.count()).select_from(PromotionLease)
                                     .where(PromotionLease.closed_at.is_(None))) or 0  # fmt: skip
        usage = session.get(PromotionUsage, "SPRING")
        promoted = list(session.scalars(select(Decision).where(Decision.promotion == "SPRING")))
    missing = received - logged
    assert not missing, f"{len(missing)} decisions a client received are not in the log"
    assert not set(acknowledged) - set(stored), "an acknowledged outcome is not stored"
    assert max(stored.values()) == 1, "an outcome is stored twice"
    for decision_id, sent in acknowledged.items():
        assert outcomes[decision_id].converted == sent["converted"]
    assert max(applied.values(), default=1) == 1, "an outcome was applied twice"
    assert row.applied_outcomes == sum(applied.values()), "the applied count drifted"
    assert set(applied) >= set(stored), "an outcome was never applied"
    # Leases: all expired ones came back; nothing is allocated beyond spend and open holds.
    assert open_leases == 0
    assert usage.allocated_minor == usage.spent_minor + usage.held_minor
    assert usage.allocated_offers == usage.redemptions + usage.open_offers
    held = sum(d.promotion_reserved_minor for d in promoted if d.hold_open)
    assert (usage.held_minor, usage.open_offers) == (held, sum(d.hold_open for d in promoted))
    # The caps: settled spend and redemptions (offers whose hold was released re-open it).
    assert usage.spent_minor <= 900 and usage.redemptions <= 8
    assert usage.spent_minor + usage.held_minor <= 900 and usage.redemptions + usage.open_offers <= 8
