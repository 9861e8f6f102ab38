"""Degraded mode: no model, a corrupt snapshot, a log that cannot be written, a database that
is slow, down or unreachable. Quotes answer within their budget, with list prices flagged
``fallback`` only when they are logged, or 503 when they cannot be; ``/readyz`` says what is
degraded, and recovery needs nobody."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.cli import main as cli
from api.orm import ModelSnapshot
from api.security import Role
from api.settings import load_settings
from tests.conftest import Api
from tests.factories import publish, synthetic_posterior
from tests.proxy import tcp_proxy
from tests.servers import servers

QUOTE = {"customer_id": "c-1", "lines": [{"sku": "TEA-1", "quantity": 1}]}


def _quote(api: Api, customer: str = "c-1") -> Any:
    return api.post("/v1/quotes", Role.CHECKOUT, json={**QUOTE, "customer_id": customer})


def test_no_model_serves_logged_list_prices_flagged_fallback(catalog):
    response = _quote(catalog)
    assert response.status_code == 201
    [line] = response.json()["lines"]
    assert line["fallback"] is True and line["price"] == line["list_price"]
    logged = catalog.get(f"/v1/decisions/{line['decision_id']}", Role.ANALYST)
    assert logged.status_code == 200
    ready = catalog.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert any("no demand model" in p for p in ready.json()["degraded"])


def _corrupt(sessions: Any, snapshot_id: int) -> None:
    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, snapshot_id)
        assert row is not None
        row.draws = b"\x00not a posterior\xff" * 10


def test_a_corrupt_snapshot_keeps_the_last_good_one_serving(catalog, sessions):
    state = catalog.client.app.state.pricing
    good = publish(sessions, synthetic_posterior())
    state.posterior.refresh()
    assert _quote(catalog).json()["lines"][0]["fallback"] is False

    bad = publish(sessions, synthetic_posterior(seed=1))
    _corrupt(sessions, bad)
    assert state.posterior.refresh() is False  # refused, not swapped
    response = _quote(catalog, "c-2")
    assert response.status_code == 201
    assert response.json()["lines"][0]["fallback"] is False  # still the good snapshot
    assert state.posterior.served.snapshot_id == good
    report = catalog.client.get("/readyz").json()
    assert report["status"] == "degraded"
    assert any(f"snapshot {bad} could not be loaded" in p and f"still serving snapshot {good}" in p
               for p in report["degraded"])  # fmt: skip
    # A later good snapshot recovers without a restart.
    newer = publish(sessions, synthetic_posterior(seed=2))
    assert state.posterior.refresh() is True
    assert state.posterior.served.snapshot_id == newer
    assert catalog.client.get("/readyz").json()["status"] == "ready"


def test_a_corrupt_first_snapshot_serves_list_prices(catalog, sessions):
    state = catalog.client.app.state.pricing
    _corrupt(sessions, publish(sessions, synthetic_posterior()))
    state.posterior.refresh()
    [line] = _quote(catalog).json()["lines"]
    assert line["fallback"] is True and line["price"] == line["list_price"]
    report = catalog.client.get("/readyz").json()
    assert any("could not be loaded" in p and "list prices" in p for p in report["degraded"])


def test_a_log_that_cannot_be_written_is_503_and_reported_until_it_recovers(catalog):
    writer = catalog.client.app.state.pricing.writer

    def down(_session: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    writer.before_commit = down
    refused = _quote(catalog)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "price" not in refused.text
    report = catalog.client.get("/readyz").json()
    assert any("decision log cannot be written" in p for p in report["degraded"])
    writer.before_commit = None
    assert _quote(catalog, "c-9").status_code == 201
    report = catalog.client.get("/readyz").json()
    assert not any("decision log" in p for p in report["degraded"])


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    assert cli(["migrate", "--database-url", url]) == 0
    return url


def test_a_locked_sqlite_database_answers_503_within_the_write_timeout(sqlite_file, capsys):
    from api.db import make_engine, make_session_factory
    from api.services.keys import create_key

    engine = make_engine(sqlite_file)
    with make_session_factory(engine)() as session:
        key = create_key(session, name="c", role=Role.CHECKOUT, actor=None).key
    with make_session_factory(engine)() as session:
        admin = create_key(session, name="m", role=Role.ADMIN, actor=None).key
    engine.dispose()
    # SQLite would wait 60 s for the lock: the answer must come from the 1 s write timeout.
    settings = load_settings(database_url=sqlite_file, write_timeout_seconds=1.0,
                             db_write_wait_seconds=60.0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        api = Api(client, {Role.CHECKOUT: key, Role.ADMIN: admin, Role.MERCHANDISER: admin})
        api.segment("default")
        api.product("TEA-1")
        assert _quote(api).status_code == 201
        blocker = sqlite3.connect(sqlite_file.removeprefix("sqlite:///"), timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            started = time.monotonic()
            refused = _quote(api, "c-2")
            elapsed = time.monotonic() - started
            assert refused.status_code == 503
            # Bounds far from both timeouts (a loaded CI machine is slow, not 60 s slow).
            assert elapsed < 20.0, elapsed  # the write timeout, not SQLite's 60 s busy wait
        finally:
            blocker.rollback()
            blocker.close()
        deadline = time.monotonic() + 20
        while _quote(api, "c-3").status_code != 201:
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.2)


# ---- PostgreSQL behind a proxy the test controls --------------------------------------


def _timed_quote(base: str, headers: dict[str, str], customer: str) -> tuple[int, float, str]:
    started = time.monotonic()
    try:
        response = httpx.post(f"{base}/v1/quotes", headers=headers, timeout=30, json={
            "customer_id": customer, "lines": [{"sku": "COF-001", "quantity": 1}]})  # fmt: skip
    except httpx.HTTPError as exc:  # a hung server: the test fails on the time below
        return 0, time.monotonic() - started, repr(exc)
    return response.status_code, time.monotonic() - started, response.text


def _until_quotes_work(base: str, headers: dict[str, str], seconds: float = 30.0) -> float:
    started = time.monotonic()
    n = 0
    while True:
        n += 1
        status, _, _ = _timed_quote(base, headers, f"recover-{n}-{time.monotonic()}")
        if status == 201:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "quotes did not recover"
        time.sleep(0.25)


@pytest.fixture
def proxied(db_url: str, backend: str, tmp_path: Path, capsys) -> Iterator[tuple[Any, str, dict[str, str]]]:
    """A demo server on PostgreSQL reached through a TCP proxy: (proxy, base URL, keys)."""
    if backend != "postgresql":
        pytest.skip("a network proxy between the server and its database: PostgreSQL only")
    keys_file = tmp_path / "keys.json"
    assert cli(["seed-demo", "--database-url", db_url, "--keys-file", str(keys_file)]) == 0
    capsys.readouterr()
    keys = json.loads(keys_file.read_text())
    parts = urlsplit(db_url)
    with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        via = db_url.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}")
        with servers(via, 1, PRICING_WRITE_TIMEOUT_SECONDS="1", PRICING_DB_CONNECT_TIMEOUT_SECONDS="2",
                     PRICING_DB_POOL_SIZE="4") as [(base, _)]:  # fmt: skip
            yield proxy, base, keys


def test_a_database_that_goes_away_gets_503_in_budget_then_recovers_by_itself(proxied):
    proxy, base, keys = proxied
    checkout = {"Authorization": f"Bearer {keys['checkout']}"}
    assert _timed_quote(base, checkout, "before")[0] == 201
    assert httpx.get(f"{base}/readyz").status_code == 200

    proxy.refuse()  # the database is down
    for i in range(3):
        status, elapsed, body = _timed_quote(base, checkout, f"down-{i}")
        assert status == 503, body
        assert elapsed < 15.0, elapsed  # write timeout 1 s, connect timeout 2 s; no hang
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert any("decision log cannot be written" in p for p in ready.json()["degraded"])

    proxy.resume()
    assert _until_quotes_work(base, checkout) < 30
    ready = httpx.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200
    assert not any("decision log" in p for p in ready.json()["degraded"])


def test_a_database_that_hangs_gets_503_in_budget_then_recovers_by_itself(proxied):
    proxy, base, keys = proxied
    checkout = {"Authorization": f"Bearer {keys['checkout']}"}
    assert _timed_quote(base, checkout, "before")[0] == 201

    proxy.hang()  # a stuck server: connections open, nothing answers
    for i in range(3):
        status, elapsed, body = _timed_quote(base, checkout, f"hung-{i}")
        assert status == 503, body
        assert elapsed < 15.0, elapsed  # the write timeout (1 s), not the client's 30 s
    # A key the worker has not seen must be checked against the database: 503 too.
    unknown = {"Authorization": "Bearer pe_0badc0de_" + "x" * 43}
    status, elapsed, _ = _timed_quote(base, unknown, "hung-key")
    assert status == 503 and elapsed < 15.0

    proxy.resume()
    assert _until_quotes_work(base, checkout) < 30
