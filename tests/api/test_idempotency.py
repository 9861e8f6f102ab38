"""``Idempotency-Key`` on ``POST /v1/quotes``: a retried request gets the same quote back."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.app import create_app
from api.db import read_only
from api.hot.maintenance import WriterTask
from api.orm import Decision, QuoteIdempotency, utcnow
from api.security import Role
from api.services.idempotency import purge_due, purge_expired, purge_expired_in
from api.services.keys import create_key
from api.settings import load_settings

BODY = {"customer_id": "c-7", "segment": "loyalty",
        "lines": [{"sku": "TEA-1", "quantity": 2}, {"sku": "TEA-2"}]}  # fmt: skip


def _quote(api: Any, key: str | None, body: dict[str, Any] = BODY, **headers: str) -> Any:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return api.post("/v1/quotes", Role.CHECKOUT, json=body, headers={**extra, **headers})


def _decisions(sessions: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Decision)) or 0)


def test_a_retry_with_the_same_key_returns_the_same_quote_and_logs_nothing_more(
    catalog, sessions
):
    first = _quote(catalog, "cart-view-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    logged = _decisions(sessions)
    assert logged == 2
    again = _quote(catalog, "cart-view-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _decisions(sessions) == logged
    with sessions() as session:
        stored = session.scalars(select(QuoteIdempotency)).one()
    assert stored.key == "cart-view-1"
    assert str(stored.quote_id) == first.json()["quote_id"]
    assert stored.expires_at - utcnow() > timedelta(hours=23)


def test_without_a_key_every_request_is_a_new_quote(catalog):
    assert _quote(catalog, None).json()["quote_id"] != _quote(catalog, None).json()["quote_id"]


def test_another_key_is_another_quote(catalog, sessions):
    first = _quote(catalog, "a").json()
    second = _quote(catalog, "b").json()
    assert first["quote_id"] != second["quote_id"]


def test_the_same_key_with_a_different_request_is_422_naming_the_header(catalog, sessions):
    assert _quote(catalog, "k-1").status_code == 201
    logged = _decisions(sessions)
    changed = {**BODY, "lines": [{"sku": "TEA-1", "quantity": 3}]}
    response = _quote(catalog, "k-1", changed)
    assert response.status_code == 422
    problem = response.json()["detail"][0]
    assert problem["field"] == "Idempotency-Key"
    assert "different request" in problem["msg"]
    assert _decisions(sessions) == logged


def test_another_worker_answers_a_retry_from_the_stored_quote(catalog, db_url, sessions):
    first = _quote(catalog, "retry-elsewhere")
    with TestClient(create_app(load_settings(database_url=db_url))) as other:
        headers = {**catalog.headers(Role.CHECKOUT), "Idempotency-Key": "retry-elsewhere"}
        again = other.post("/v1/quotes", json=BODY, headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        changed = {**BODY, "customer_id": "someone-else"}
        refused = other.post("/v1/quotes", json=changed, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["field"] == "Idempotency-Key"
    assert _decisions(sessions) == 2


def test_keys_are_scoped_to_the_api_key_that_sent_them(catalog, sessions):
    first = _quote(catalog, "shared-name").json()
    with sessions() as session:
        other_key = create_key(session, name="checkout-2", role=Role.CHECKOUT, actor=None).key
    response = catalog.post(
        "/v1/quotes", None, json=BODY,
        headers={"Authorization": f"Bearer {other_key}", "Idempotency-Key": "shared-name"},
    )  # fmt: skip
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert response.json()["quote_id"] != first["quote_id"]


def test_an_expired_key_makes_a_new_quote(catalog, db_url, sessions):
    first = _quote(catalog, "old").json()
    with sessions() as session, session.begin():
        session.execute(update(QuoteIdempotency).values(expires_at=utcnow() - timedelta(seconds=1)))
    with TestClient(create_app(load_settings(database_url=db_url))) as other:
        headers = {**catalog.headers(Role.CHECKOUT), "Idempotency-Key": "old"}
        fresh = other.post("/v1/quotes", json={**BODY, "customer_id": "c-8"}, headers=headers)
        assert fresh.status_code == 201, fresh.text
        assert "Idempotent-Replayed" not in fresh.headers
        assert fresh.json()["quote_id"] != first["quote_id"]
    with sessions() as session:
        stored = session.scalars(select(QuoteIdempotency)).one()
    assert str(stored.quote_id) == fresh.json()["quote_id"]


def test_concurrent_requests_with_one_key_make_one_quote(catalog, sessions):
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: _quote(catalog, key), range(16)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["quote_id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" in r.headers for r in responses) == 15
    assert _decisions(sessions) == 2


def test_a_malformed_key_is_422_naming_the_header(catalog, sessions):
    for bad in ("", "x" * 256, "has space"):
        response = _quote(catalog, bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["field"] == "Idempotency-Key"
    assert _decisions(sessions) == 0


def test_a_quote_decided_again_keeps_its_key_for_the_quote_that_was_logged(
    catalog, db_url, sessions
):
    """Worker B does not know the customer's live decision from worker A: its first attempt
    is refused inside the writer (after taking the key) and decided again, repeating A's
    decision. The key must end up naming the logged quote, not the refused attempt."""
    first = catalog.quote("TEA-1", customer="c-9")
    body = {"customer_id": "c-9", "lines": [{"sku": "TEA-1", "quantity": 1}]}
    with TestClient(create_app(load_settings(database_url=db_url))) as other:
        headers = {**catalog.headers(Role.CHECKOUT), "Idempotency-Key": "repeat"}
        second = other.post("/v1/quotes", json=body, headers=headers)
        assert second.status_code == 201, second.text
        assert second.json()["lines"][0]["decision_id"] == first["lines"][0]["decision_id"]
    again = _quote(catalog, "repeat", body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == second.json()
    assert _decisions(sessions) == 1


def test_expired_keys_are_purged_in_bounded_passes(catalog, sessions):
    for n in range(3):
        _quote(catalog, f"purge-{n}", {**BODY, "customer_id": f"p-{n}"})
    with sessions() as session, session.begin():
        session.execute(update(QuoteIdempotency).where(QuoteIdempotency.key != "purge-2")
                        .values(expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
    assert purge_expired(sessions, limit=1) == 1
    assert purge_expired(sessions) == 1
    assert purge_expired(sessions) == 0
    with sessions() as session:
        assert session.scalars(select(QuoteIdempotency.key)).all() == ["purge-2"]
    assert _decisions(sessions) == 6  # the decisions stay: only the retry memory goes


def test_the_served_purge_runs_in_the_group_writer_in_bounded_passes(catalog, sessions):
    """The worker's purge (a refresher task) deletes through its group writer, at most
    ``limit`` keys a pass, and queues nothing while no key has expired."""
    state = catalog.client.app.state.pricing
    state.refresher.stop()  # this test runs the purge itself
    state.promotions.writer = None  # lease top-ups would add commits of their own
    for n in range(3):
        _quote(catalog, f"served-{n}", {**BODY, "customer_id": f"s-{n}"})
    task = WriterTask(state.writer, read_only(sessions), purge_due, purge_expired_in, 2)
    batches = state.writer.batches
    assert task() is None and state.writer.batches == batches
    with sessions() as session, session.begin():
        session.execute(update(QuoteIdempotency).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert [task(), task(), task()] == [2, 1, None]
    assert state.writer.batches == batches + 2
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(QuoteIdempotency)) == 0
