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
