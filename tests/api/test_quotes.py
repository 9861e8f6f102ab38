import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from api.orm import Decision
from api.security import Role


def test_quote_prices_every_line_at_list_price_and_logs_each_decision(catalog, sessions):
    before = datetime.now().astimezone()
    body = catalog.quote("TEA-1", "TEA-2", customer="cust-9", segment="loyalty",
                         context={"device": "mobile", "cart_items": 2}, jurisdiction="US-NY")  # fmt: skip
    assert uuid.UUID(body["quote_id"])
    assert body["segment"] == "loyalty"
    assert body["personalized"] is False
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.utcoffset() == timedelta(0)
    assert timedelta(minutes=14) < expires - before < timedelta(minutes=16)
    lines = body["lines"]
    assert [(line["sku"], line["list_price"], line["price"]) for line in lines] == [
        ("TEA-1", "10.00", "10.00"), ("TEA-2", "4.99", "4.99")]  # fmt: skip
    # No demand model published yet: every line falls back to the list price, flagged.
    assert all(line["propensity"] == 1.0 and line["personalized"] is False for line in lines)
    assert all(
        line["fallback"] is True and line["reasons"] == ["no_demand_model"] for line in lines
    )
    assert all(line["currency"] == "USD" for line in lines)

    with sessions() as session:
        stored = {d.id: d for d in session.scalars(select(Decision))}
    assert set(stored) == {uuid.UUID(line["decision_id"]) for line in lines}
    first = stored[uuid.UUID(lines[0]["decision_id"])]
    assert (
        first.price_minor == 1000
        and first.list_price_minor == 1000
        and first.unit_cost_minor == 400
    )
    assert first.segment == "loyalty" and first.customer_id == "cust-9"
    assert first.propensity == 1.0 and first.policy == "thompson/1"
    assert (
        first.guardrail_trail["fallback"] is True
        and first.guardrail_trail["guardrail_version"] is None
    )
    assert first.context == {"device": "mobile", "cart_items": 2}
    assert first.jurisdiction == "US-NY"
    assert first.created_at.tzinfo is not None


def test_quote_without_segment_uses_the_default_segment(catalog):
    assert catalog.quote("TEA-1")["segment"] == "default"


def test_quote_money_is_decimal_strings(catalog):
    line = catalog.quote("TEA-2")["lines"][0]
    assert isinstance(line["price"], str) and Decimal(line["price"]) == Decimal("4.99")


def test_quote_names_every_unknown_or_inactive_sku_and_logs_nothing(catalog, sessions):
    catalog.product("OLD-1", active=False)
    response = catalog.post("/v1/quotes", Role.CHECKOUT, json={
        "customer_id": "c", "lines": [{"sku": "TEA-1"}, {"sku": "NOPE"}, {"sku": "OLD-1"}]})  # fmt: skip
    assert response.status_code == 422
    fields = {(p["field"], p["msg"]) for p in response.json()["detail"]}
    assert fields == {
        ("lines[1].sku", "unknown sku 'NOPE'"),
        ("lines[2].sku", "inactive sku 'OLD-1'"),
    }
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0


def test_quote_with_unknown_segment_is_422_naming_segment(catalog):
    response = catalog.post("/v1/quotes", Role.CHECKOUT,
                            json={"customer_id": "c", "segment": "martians", "lines": [{"sku": "TEA-1"}]})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "segment"


def test_quote_with_deactivated_segment_is_422(catalog):
    assert catalog.delete("/v1/segments/loyalty", Role.MERCHANDISER).status_code == 200
    response = catalog.post("/v1/quotes", Role.CHECKOUT,
                            json={"customer_id": "c", "segment": "loyalty", "lines": [{"sku": "TEA-1"}]})  # fmt: skip
    assert response.status_code == 422
    assert "inactive segment" in response.json()["detail"][0]["msg"]


def test_a_hundred_lines_are_accepted(catalog):
    body = {"customer_id": "c", "lines": [{"sku": "TEA-1", "quantity": 1}] * 100}
    response = catalog.post("/v1/quotes", Role.CHECKOUT, json=body)
    assert response.status_code == 201
    assert len({line["decision_id"] for line in response.json()["lines"]}) == 100


def test_quote_reflects_the_current_list_price(catalog):
    catalog.product("TEA-1", "12.50", "4.00")
    assert catalog.quote("TEA-1")["lines"][0]["price"] == "12.50"


# --------------------------------------------------------------------------- sticky, several workers
def _workers(sessions, n=2):
    from api.db import read_only
    from api.services.context import ContextSchemaCache
    from api.services.guardrails import GuardrailCache
    from api.services.quotes import QuoteService

    out = []
    for _ in range(n):
        service = QuoteService.build(sessions, guardrails=GuardrailCache(read_only(sessions)),
                                     context_schema=ContextSchemaCache(read_only(sessions)))  # fmt: skip
        service.warm()
        out.append(service)
    return out


def test_a_decision_made_by_another_worker_is_repeated_not_doubled(catalog, sessions):
    """Worker B's map knows nothing of the customer: its writer finds A's live decision in
    the log, writes nothing, and B answers with A's decision."""
    from api.schemas.quotes import QuoteRequest
    from pricing.policy import ListPricePolicy

    a, b = _workers(sessions)
    try:
        request = QuoteRequest(customer_id="both", lines=[{"sku": "TEA-1"}, {"sku": "TEA-2"}])
        first = a.create_sync(request, policy=ListPricePolicy())
        again = b.create_sync(request, policy=ListPricePolicy())
        assert [x.decision_id for x in again.lines] == [x.decision_id for x in first.lines]
        # Now B's map knows the customer: a third quote is answered without the log.
        third = b.create_sync(request, policy=ListPricePolicy())
        assert [x.decision_id for x in third.lines] == [x.decision_id for x in first.lines]
    finally:
        a.close()
        b.close()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 2


def test_concurrent_quotes_of_one_customer_make_one_decision_per_sku(catalog, sessions):
    import threading

    from api.schemas.quotes import QuoteRequest
    from pricing.policy import ListPricePolicy

    workers = _workers(sessions)
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def client(n: int) -> None:
        barrier.wait()
        request = QuoteRequest(customer_id="racer", lines=[{"sku": "TEA-1"}])
        quote = workers[n % 2].create_sync(request, policy=ListPricePolicy())
        ids.append(str(quote.lines[0].decision_id))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for service in workers:
        service.close()
    with sessions() as session:
        stored = session.scalars(select(Decision.id).where(Decision.customer_id == "racer")).all()
    # On SQLite the writers' transactions are serialized: exactly one decision. On
    # PostgreSQL two workers' transactions may overlap (read committed): at most one each.
    assert 1 <= len(stored) <= 2 and set(ids) == {str(s) for s in stored}
