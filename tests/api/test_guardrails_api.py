"""Guardrails over HTTP and personalized quotes inside them."""

from decimal import Decimal

import pytest
from sqlalchemy import select

from api.orm import AuditEntry, Decision
from api.security import Role
from tests.factories import publish, synthetic_posterior

M = Role.MERCHANDISER


@pytest.fixture
def priced(catalog, sessions, client):
    """Catalog + a published posterior the API workers have loaded."""
    publish(sessions, synthetic_posterior(spread=0.5))
    client.app.state.pricing.posterior.refresh()
    return catalog


def put(api, rules, **extra):
    return api.put("/v1/guardrails", M, json={"rules": rules, **extra})


def test_guardrails_are_versioned_and_audited(catalog, sessions):
    assert catalog.get("/v1/guardrails", Role.ANALYST).json() is None
    first = put(catalog, [{"scope": "global", "max_discount": 0.2, "max_increase": 0.1}])
    assert first.status_code == 200, first.text
    second = put(
        catalog, [{"scope": "category", "target": "tea", "max_discount": 0.1}], note="tighter"
    )
    assert second.json()["version"] > first.json()["version"]
    active = catalog.get("/v1/guardrails", Role.ANALYST).json()
    assert active["version"] == second.json()["version"] and active["note"] == "tighter"
    with sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.entity == "guardrails")).all()
    assert len(entries) == 2 and entries[1].before["version"] == first.json()["version"]


@pytest.mark.parametrize(
    ("rules", "field", "text"),
    [([{"scope": "global", "max_discount": "a lot"}], "rules[0].max_discount", ""),
     ([{"scope": "global", "max_discount": 1.5}], "rules[0].max_discount", ""),
     ([{"scope": "sku", "target": "NOPE", "max_discount": 0.1}], "rules[0].target", "unknown"),
     ([{"scope": "category", "target": "shoes", "max_discount": 0.1}], "rules[0].target", "unknown category"),
     ([{"scope": "global", "floor": "1.00"}], "rules[0].floor", "absolute price"),
     ([{"scope": "sku", "target": "TEA-1", "floor": "-1.00"}], "rules[0].floor", "positive"),
     ([{"scope": "sku", "target": "TEA-1", "floor": "9.00", "ceiling": "8.00"}], "rules[0].floor", "above ceiling"),
     ([{"scope": "sku", "target": "TEA-1", "floor": "1.001"}], "rules[0].floor", "decimal place"),
     ([{"scope": "global", "max_discount": 0.1}, {"scope": "global", "max_increase": 0.1}], "rules[1].scope", "already set"),
     ([{"scope": "sku"}], "rules[0].target", "needs a target")],
)  # fmt: skip
def test_bad_guardrails_are_422_naming_the_field_and_change_nothing(catalog, rules, field, text):
    put(catalog, [{"scope": "global", "max_discount": 0.2}])
    before = catalog.get("/v1/guardrails", M).json()
    response = put(catalog, rules)
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(p["field"] == field and text in p["msg"] for p in problems), problems
    assert catalog.get("/v1/guardrails", M).json() == before


def test_contradictory_rules_name_both(catalog):
    response = put(catalog, [
        {"scope": "global", "max_increase": 0.0},
        {"scope": "sku", "target": "TEA-1", "floor": "12.00"},
    ])  # fmt: skip
    assert response.status_code == 422
    (problem,) = response.json()["detail"]  # one conflict, reported once, naming both rules
    assert {problem["field"], *problem["related_fields"]} == {"rules[0].max_increase", "rules[1].floor"}
    # Money in the currency's units with its code, rules by their place in the request.
    assert ">= 12.00 USD" in problem["msg"] and "<= 12.00 USD" not in problem["msg"]
    assert "rules[1].floor" in problem["msg"] and "rules[0].max_increase" in problem["msg"]


def test_floor_above_ceiling_is_shown_in_the_currency(catalog):
    response = put(catalog, [{"scope": "sku", "target": "TEA-1", "floor": "10.00", "ceiling": "9.00"}])
    assert response.status_code == 422
    messages = [p["msg"] for p in response.json()["detail"]]
    assert messages == ["floor 10.00 USD is above ceiling 9.00 USD of the same rule"]


def test_personalized_quotes_stay_inside_guardrails_and_log_propensities(priced, sessions):
    put(priced, [{"scope": "global", "max_discount": 0.3, "max_increase": 0.2, "ending": 99}])
    prices = set()
    for i in range(40):
        line = priced.quote("TEA-1", customer=f"c{i}")["lines"][0]
        price = Decimal(line["price"])
        assert Decimal("7.00") <= price <= Decimal("12.00") and str(price).endswith(".99")
        assert line["personalized"] is True and 0 < line["propensity"] <= 1
        prices.add(price)
    assert len(prices) > 1, "Thompson sampling explores more than one price"
    with sessions() as session:
        decision = session.scalars(select(Decision).limit(1)).first()
    assert decision.model_version is not None and decision.guardrail_trail["candidates"] == 5


def test_quotes_are_sticky_until_they_expire(priced):
    first = priced.quote("TEA-1", customer="same")["lines"][0]
    again = priced.quote("TEA-1", customer="same")["lines"][0]
    assert again["decision_id"] == first["decision_id"] and again["price"] == first["price"]
    other = priced.quote("TEA-1", customer="someone-else")["lines"][0]
    assert other["decision_id"] != first["decision_id"]


def test_kill_switch_opt_out_and_exclusion_serve_list_price(priced):
    put(
        priced,
        [
            {"scope": "global", "max_discount": 0.3},
            {"scope": "sku", "target": "TEA-2", "exclude": True},
        ],
    )
    line = priced.quote("TEA-2", customer="x")["lines"][0]
    assert (line["price"], line["personalized"], line["reasons"]) == (
        "4.99",
        False,
        ["excluded_from_personalization"],
    )
    body = {"customer_id": "y", "lines": [{"sku": "TEA-1"}], "consent": {"personalization": False}}
    line = priced.post("/v1/quotes", Role.CHECKOUT, json=body).json()["lines"][0]
    assert (line["price"], line["personalized"], line["reasons"]) == (
        "10.00",
        False,
        ["customer_opted_out"],
    )
    put(priced, [{"scope": "global", "max_discount": 0.3}], kill_switch=True)
    for i in range(5):
        line = priced.quote("TEA-1", customer=f"k{i}")["lines"][0]
        assert (line["price"], line["personalized"], line["propensity"]) == ("10.00", False, 1.0)


def test_a_failing_policy_falls_back_to_list_price(priced, client, monkeypatch):
    def broken(_line):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(client.app.state.pricing.policy, "decide", broken)
    line = priced.quote("TEA-1", customer="z")["lines"][0]
    assert (line["price"], line["fallback"], line["reasons"]) == ("10.00", True, ["policy_error"])


def test_preview_shows_the_price_distribution_without_activating(priced):
    put(priced, [{"scope": "global", "max_discount": 0.1}])
    active = priced.get("/v1/guardrails", M).json()
    proposal = {"rules": [{"scope": "global", "max_discount": 0.3, "max_increase": 0.2, "ending": 99}],
                "skus": ["TEA-1"], "segments": ["default", "loyalty"]}  # fmt: skip
    response = priced.post("/v1/guardrails/preview", M, json=proposal)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] is not None and len(body["lines"]) == 2
    line = body["lines"][0]
    assert line["prices"] == ["7.99", "8.99", "9.99", "10.99", "11.99"]
    assert sum(line["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert 0 < line["expected_conversion"] < 1 and Decimal(line["expected_profit_per_visitor"]) > 0
    assert priced.get("/v1/guardrails", M).json() == active
    bad = priced.post("/v1/guardrails/preview", M, json={**proposal, "skus": ["NOPE"]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "skus"


CAPS = [{"scope": "global", "max_discount": 0.4, "max_increase": 0.4, "segment_gap": 1.05,
         "max_change": 0.1}]  # fmt: skip


def _check_day(prices, anchor):
    """Every price within max_change of the anchor; any two within the segment gap."""
    for price in prices:
        assert abs(price - anchor) <= anchor * Decimal("0.1") + Decimal("0.01")
    assert max(prices) <= min(prices) * Decimal("1.05") + Decimal("0.01")


def test_segment_price_gap_and_daily_change_caps_hold_across_quotes(priced, sessions):
    put(priced, CAPS)
    served = []
    for i in range(30):
        segment = "default" if i % 2 else "loyalty"
        body = {"customer_id": f"g{i}", "segment": segment, "lines": [{"sku": "TEA-1"}]}
        line = priced.post("/v1/quotes", Role.CHECKOUT, json=body).json()["lines"][0]
        served.append(Decimal(line["price"]))
    # TEA-1 never sold before today: its anchor is its non-personalized price, the list price.
    _check_day(served, Decimal("10.00"))
    assert len(set(served)) > 1  # the engine did personalize inside the caps
    with sessions() as session:
        trails = [d.guardrail_trail for d in session.scalars(select(Decision))]
    assert {t["anchor_price_minor"] for t in trails} == {1000}


def test_two_workers_hold_the_day_caps_between_them(priced, sessions, db_url):
    """A second app on the same database is a second worker with its own memory."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import load_settings
    from tests.conftest import Api

    put(priced, CAPS)
    # Yesterday's close was 10.50: both workers anchor today's prices there.
    from datetime import timedelta

    from api.orm import SkuDailyPrices, utcnow

    yesterday = utcnow() - timedelta(days=1)
    with sessions() as session, session.begin():
        session.add(SkuDailyPrices(sku="TEA-1", day=yesterday.date(), first_at=yesterday,
                                   last_at=yesterday, last_price_minor=1050, low_minor=990,
                                   high_minor=1050, low_final_minor=990, decisions=3,
                                   updated_at=utcnow()))  # fmt: skip
    priced.client.app.state.pricing.prices.refresh(full=True)
    second_app = create_app(load_settings(database_url=db_url, refresh_seconds=30))
    with TestClient(second_app) as second_client:
        second_app.state.pricing.posterior.refresh()
        second = Api(second_client, priced.keys)
        served = []
        for i in range(30):
            api = priced if i % 2 else second
            segment = ("default", "loyalty")[(i // 2) % 2]
            body = {"customer_id": f"w{i}", "segment": segment, "lines": [{"sku": "TEA-1"}]}
            response = api.post("/v1/quotes", Role.CHECKOUT, json=body)
            assert response.status_code == 201, response.text
            served.append(Decimal(response.json()["lines"][0]["price"]))
    _check_day(served, Decimal("10.50"))
    with sessions() as session:
        row = session.get(SkuDailyPrices, ("TEA-1", utcnow().date()))
    assert row is not None and row.decisions == 30
    assert Decimal(row.low_minor) / 100 == min(served) and Decimal(row.high_minor) / 100 == max(served)


def test_a_repeat_purchase_within_the_quote_ttl_is_a_new_decision_at_the_same_price(priced):
    first = priced.quote("TEA-1", customer="buyer")["lines"][0]
    outcome = {
        "decision_id": first["decision_id"],
        "converted": True,
        "quantity": 1,
        "revenue": first["price"],
    }
    assert priced.post("/v1/outcomes", Role.CHECKOUT, json=outcome).status_code == 201
    again = priced.quote("TEA-1", customer="buyer")["lines"][0]
    assert again["decision_id"] != first["decision_id"] and again["price"] == first["price"]
    assert again["reasons"] == ["sticky_quote"] and again["propensity"] == 1.0
    second = {**outcome, "decision_id": again["decision_id"]}
    assert priced.post("/v1/outcomes", Role.CHECKOUT, json=second).status_code == 201
