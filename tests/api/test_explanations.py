"""``GET /v1/decisions/{id}/explanation``: what a price was set from, in fields and words."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from api.orm import Decision, SkuDailyPrices, utcnow
from api.security import Role
from api.services.keys import create_key
from tests.factories import publish, synthetic_posterior


def _explain(api, decision_id, role=Role.ANALYST, **kw):
    return api.get(f"/v1/decisions/{decision_id}/explanation", role, **kw)


def test_a_model_price_is_explained_with_its_inputs_propensity_and_bounds(catalog, sessions, client):
    catalog.put("/v1/guardrails", Role.MERCHANDISER,
                json={"rules": [{"scope": "global", "max_discount": 0.1}]})  # fmt: skip
    snapshot = publish(sessions, synthetic_posterior(spread=0.5))
    client.app.state.pricing.posterior.refresh()
    line = catalog.quote("TEA-1", customer="c-1", segment="loyalty", context={"device": "mobile"},
                         jurisdiction="US-CA")["lines"][0]  # fmt: skip
    response = _explain(catalog, line["decision_id"])
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["decision_id"] == line["decision_id"]
    assert (out["segment"], out["declared_features"], out["jurisdiction"]) == (
        "loyalty", {"device": "mobile"}, "US-CA")  # fmt: skip
    assert out["price"] == line["price"] and out["list_price"] == "10.00"
    assert out["propensity"] == line["propensity"]
    assert out["personalized"] is line["personalized"] is (line["price"] != "10.00")
    assert out["model_version"] == str(snapshot) and out["policy"] == "thompson/1"
    assert out["how"] in ("thompson_sampling", "exploration")
    assert out["guardrail_version"] is not None and out["candidates"] >= 2
    with sessions() as session:
        trail = session.get(Decision, uuid.UUID(line["decision_id"])).guardrail_trail
    bound = [r for r in trail["reasons"] if r.endswith((".max_discount", "list_price"))]
    assert out["guardrails_binding"] == bound  # the rules at the end the price sits on
    summary = out["summary"]
    assert f"quoted at {line['price']} USD (list 10.00 USD)" in summary
    assert "segment 'loyalty'" in summary and "device=mobile" in summary
    assert f"probability {line['propensity']:.3g}" in summary


def test_a_fallback_price_says_why(catalog):
    line = catalog.quote("TEA-2")["lines"][0]
    out = _explain(catalog, line["decision_id"]).json()
    assert out["how"] == "no_demand_model" and out["fallback"] is True
    assert out["personalized"] is False and out["reference_price"] is None
    assert "no demand model was published yet" in out["summary"]
    assert "not personalized" in out["summary"]


def test_the_reference_price_is_the_lowest_paid_in_the_30_days_before(catalog, sessions):
    line = catalog.quote("TEA-1")["lines"][0]
    today = utcnow().date()
    now = utcnow()

    def day(offset: int, low_final: int) -> SkuDailyPrices:
        return SkuDailyPrices(sku="TEA-1", day=today - timedelta(days=offset), first_at=now,
                              last_at=now, last_price_minor=1000, low_minor=low_final,
                              high_minor=1000, low_final_minor=low_final, decisions=1,
                              updated_at=now)  # fmt: skip

    with sessions() as session, session.begin():
        # 31 days back is outside the window; today (the decision's own day) is not "before".
        session.merge(day(0, 100))
        session.add_all([day(31, 200), day(30, 850), day(12, 900), day(1, 950)])
    out = _explain(catalog, line["decision_id"]).json()
    assert out["reference_price"] == "8.50"
    assert "lowest price paid in the 30 days before was 8.50 USD" in out["summary"]


def test_a_checkout_key_reads_only_the_decisions_it_asked_for(catalog, sessions):
    line = catalog.quote("TEA-1")["lines"][0]
    assert _explain(catalog, line["decision_id"], Role.CHECKOUT).status_code == 200
    with sessions() as session:
        other = create_key(session, name="other-shop", role=Role.CHECKOUT, actor=None).key
    refused = _explain(catalog, line["decision_id"], None,
                       headers={"Authorization": f"Bearer {other}"})  # fmt: skip
    assert refused.status_code == 404
    assert _explain(catalog, line["decision_id"], Role.MERCHANDISER).status_code == 403
    assert _explain(catalog, "6f1c7e0a-3b2d-4c5e-8f9a-0b1c2d3e4f5a").status_code == 404
    with sessions() as session:
        assert all(d.key_id is not None for d in session.scalars(select(Decision)))
