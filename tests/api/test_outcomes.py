import threading
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from api.orm import Outcome
from api.schemas.outcomes import OutcomeBatchOut
from api.security import Role


def _decision(api, sku="TEA-1", customer="c-1"):
    return api.quote(sku, customer=customer)["lines"][0]["decision_id"]


def _count(sessions):
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Outcome))


def test_outcome_is_created_then_an_identical_retry_returns_the_original(catalog, sessions):
    body = {"customer_id": "c-1", "lines": [{"sku": "TEA-1", "quantity": 2}]}
    decision = catalog.post("/v1/quotes", Role.CHECKOUT, json=body).json()["lines"][0]["decision_id"]
    body = {"decision_id": decision, "converted": True, "quantity": 2, "revenue": "20.00",
            "occurred_at": "2026-11-26T10:00:00+01:00"}  # fmt: skip
    first = catalog.post("/v1/outcomes", Role.CHECKOUT, json=body)
    assert first.status_code == 201
    stored = first.json()
    assert stored["revenue"] == "20.00" and stored["currency"] == "USD"
    assert stored["occurred_at"] == "2026-11-26T09:00:00Z"
    again = catalog.post("/v1/outcomes", Role.CHECKOUT, json=body)
    assert again.status_code == 200
    assert again.json() == stored
    assert _count(sessions) == 1


def test_a_conflicting_second_outcome_is_409_and_changes_nothing(catalog, sessions):
    decision = _decision(catalog)
    catalog.post("/v1/outcomes", Role.CHECKOUT,
                 json={"decision_id": decision, "converted": True, "quantity": 1, "revenue": "10.00"})  # fmt: skip
    response = catalog.post(
        "/v1/outcomes", Role.CHECKOUT, json={"decision_id": decision, "converted": False}
    )
    assert response.status_code == 409
    body = response.json()
    assert body["detail"][0]["field"] == "decision_id"
    assert body["stored"]["converted"] is True
    with sessions() as session:
        assert session.scalar(select(Outcome.converted)) is True


def test_outcome_for_unknown_decision_is_404(catalog):
    response = catalog.post("/v1/outcomes", Role.CHECKOUT,
                            json={"decision_id": str(uuid.uuid4()), "converted": False})  # fmt: skip
    assert response.status_code == 404
    assert response.json()["detail"][0]["field"] == "decision_id"


def test_outcome_revenue_must_fit_the_decision_currency(catalog, sessions):
    decision = _decision(catalog)
    response = catalog.post("/v1/outcomes", Role.CHECKOUT,
                            json={"decision_id": decision, "converted": True, "quantity": 1, "revenue": "1.001"})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "revenue"
    response = catalog.post("/v1/outcomes", Role.CHECKOUT,
                            json={"decision_id": decision, "converted": True, "quantity": 1,
                                  "revenue": "1.00", "currency": "EUR"})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "currency"
    assert _count(sessions) == 0


def test_concurrent_retries_store_one_outcome(catalog, sessions):
    decision = _decision(catalog)
    body = {"decision_id": decision, "converted": True, "quantity": 1, "revenue": "10.00"}
    statuses = []
    barrier = threading.Barrier(8)

    def post():
        barrier.wait()
        statuses.append(catalog.post("/v1/outcomes", Role.CHECKOUT, json=body).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert _count(sessions) == 1


def test_batch_reports_each_item_and_stores_only_the_good_ones(catalog, sessions):
    d1, d2, d3 = (_decision(catalog, customer=f"c-{i}") for i in range(3))
    catalog.post("/v1/outcomes", Role.CHECKOUT, json={"decision_id": d3, "converted": False})
    unknown = str(uuid.uuid4())
    batch = [
        {"decision_id": d1, "converted": True, "quantity": 1, "revenue": "10.00",
         "occurred_at": "2026-11-26T10:00:00.000123+01:00"},                          # created
        {"decision_id": d2, "converted": False},                                      # created
        {"decision_id": d1, "converted": True, "quantity": 1, "revenue": "10.00"},   # same again
        {"decision_id": d2, "converted": True, "quantity": 1, "revenue": "10.00"},   # contradicts
        {"decision_id": d3, "converted": False},                                      # stored earlier
        {"decision_id": unknown, "converted": False},                                 # unknown
        {"decision_id": d1, "converted": True, "quantity": 1, "revenue": "10.001"},  # bad money
    ]  # fmt: skip
    response = catalog.post("/v1/outcomes/batch", Role.CHECKOUT, json={"outcomes": batch})
    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "created", "created", "duplicate", "conflict", "duplicate", "not_found", "invalid"]  # fmt: skip
    assert body["counts"] == {
        "created": 2,
        "duplicate": 2,
        "conflict": 1,
        "not_found": 1,
        "invalid": 1,
    }
    assert _count(sessions) == 3
    # The body is byte for byte what the response model gives (it is encoded without it).
    assert response.content == OutcomeBatchOut.model_validate_json(response.content).model_dump_json().encode()
    # The rows written on the driver read back through the ORM as the response shows them.
    with sessions() as session:
        stored = {str(o.decision_id): o for o in session.scalars(select(Outcome))}
    first, second = body["results"][0]["outcome"], body["results"][1]["outcome"]
    assert str(stored[d1].id) == first["id"] and stored[d1].revenue_minor == 1000
    assert stored[d1].occurred_at == datetime(2026, 11, 26, 9, 0, 0, 123, tzinfo=UTC)
    assert first["occurred_at"] == "2026-11-26T09:00:00.000123Z" and first["late"] is False
    assert stored[d2].converted is False and stored[d2].recorded_at.tzinfo is not None
    assert second["recorded_at"] == stored[d2].recorded_at.isoformat().replace("+00:00", "Z")
    assert body["results"][3]["outcome"]["converted"] is False  # the stored one, not the retry's
    # The whole batch again: nothing new is stored.
    again = catalog.post("/v1/outcomes/batch", Role.CHECKOUT, json={"outcomes": batch}).json()
    assert again["counts"].get("created", 0) == 0
    assert _count(sessions) == 3


def test_batch_of_a_thousand_is_accepted_and_more_is_422(catalog, sessions):
    decisions = [line["decision_id"] for line in
                 catalog.post("/v1/quotes", Role.CHECKOUT, json={
                     "customer_id": "c", "lines": [{"sku": "TEA-1"}] * 100}).json()["lines"]]  # fmt: skip
    items = [{"decision_id": decisions[i % 100], "converted": False} for i in range(1000)]
    response = catalog.post("/v1/outcomes/batch", Role.CHECKOUT, json={"outcomes": items})
    assert response.status_code == 200
    assert response.json()["counts"] == {"created": 100, "duplicate": 900}
    too_many = catalog.post(
        "/v1/outcomes/batch", Role.CHECKOUT, json={"outcomes": items + items[:1]}
    )
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["field"] == "outcomes"
    assert _count(sessions) == 100


def test_more_units_bought_than_quoted_is_422_naming_quantity_and_stores_nothing(catalog, sessions):
    decision = _decision(catalog)  # one unit quoted
    response = catalog.post("/v1/outcomes", Role.CHECKOUT,
                            json={"decision_id": decision, "converted": True, "quantity": 3, "revenue": "30.00"})  # fmt: skip
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == "quantity" and "3 units exceed the 1 quoted" in problem["msg"]
    assert _count(sessions) == 0
    batch = catalog.post("/v1/outcomes/batch", Role.CHECKOUT, json={"outcomes": [
        {"decision_id": decision, "converted": True, "quantity": 2, "revenue": "20.00"}]})  # fmt: skip
    assert batch.json()["results"][0]["status"] == "invalid"
    assert "quantity" in batch.json()["results"][0]["error"]


def test_the_outcome_feed_hands_on_each_new_outcome_once(catalog, sessions):
    """Other workers' outcomes reach this worker's sticky map through the refresher's feed:
    each one once (the overlap of the passes' windows re-reads it), as the integer of its UUID."""
    from api.hot.refresher import OutcomeFeed

    marked: list[list[int]] = []
    feed = OutcomeFeed(sessions, marked.append)
    d1, d2 = (_decision(catalog, customer=f"f-{i}") for i in range(2))
    catalog.post("/v1/outcomes", Role.CHECKOUT, json={"decision_id": d1, "converted": False})
    feed()
    assert marked == [[uuid.UUID(d1).int]]
    feed()  # read again inside the overlap: nothing new
    assert len(marked) == 1
    catalog.post("/v1/outcomes", Role.CHECKOUT, json={"decision_id": d2, "converted": False})
    feed()
    assert marked[1:] == [[uuid.UUID(d2).int]]
