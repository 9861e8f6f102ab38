"""``DELETE /v1/customers/{id}``: erasure that forgets the person and keeps the learning."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.orm import AuditEntry, Decision, Outcome, QuoteIdempotency, utcnow
from api.security import Role
from api.services.demand_models import load_cells
from api.services.feedback import bandit_feedback
from api.settings import load_settings
from experiments.ope import ips, snips


def _state(sessions):
    """Cells, money totals and OPE estimates: what erasure must leave unchanged."""
    with sessions() as session:
        cells = load_cells(session, until=utcnow() + timedelta(hours=2))
        arrays, meta = bandit_feedback(session)
        totals = session.execute(select(
            func.count(Outcome.id), func.sum(Outcome.revenue_minor), func.sum(Outcome.discount_minor),
            func.sum(Decision.price_minor), func.sum(Decision.propensity),
        ).select_from(Decision).outerjoin(Outcome, Outcome.decision_id == Decision.id)).one()  # fmt: skip
    n, k = meta["n_rounds"], meta["n_actions"]
    always_first = np.zeros((n, k, 1))
    always_first[:, 0, 0] = 1.0
    ope = [f(arrays["reward"], arrays["action"], arrays["pscore"], always_first) for f in (ips, snips)]
    cell_rows = sorted(zip(cells.segment.tolist(), cells.sku.tolist(), cells.log_price_ratio.tolist(),
                           cells.promotion.tolist(), cells.trials.tolist(),
                           cells.conversions.tolist(), strict=True))  # fmt: skip
    context = None if cells.context is None else cells.context.tolist()
    return cell_rows, context, tuple(totals), ope


def _quote_and_report(api, customer, sku, context=None, converted=True, key=None):
    body = {"customer_id": customer, "lines": [{"sku": sku}], "context": context or {}}
    headers = {"Idempotency-Key": key} if key else {}
    quote = api.post("/v1/quotes", Role.CHECKOUT, json=body, headers=headers)
    assert quote.status_code == 201, quote.text
    line = quote.json()["lines"][0]
    outcome = {"decision_id": line["decision_id"], "converted": converted,
               "quantity": int(converted), "revenue": line["final_price"] if converted else "0.00"}  # fmt: skip
    assert api.post("/v1/outcomes", Role.CHECKOUT, json=outcome).status_code == 201
    return line


def test_erasure_forgets_the_customer_and_keeps_cells_totals_and_ope(catalog, sessions):
    for n in range(6):
        _quote_and_report(catalog, f"other-{n}", "TEA-1", converted=n % 2 == 0)
    first = _quote_and_report(catalog, "alice@example.com", "TEA-1", {"device": "mobile"},
                              key="alice-cart-1")  # fmt: skip
    _quote_and_report(catalog, "alice@example.com", "TEA-2", {"device": "mobile"}, converted=False)
    before = _state(sessions)

    response = catalog.delete("/v1/customers/alice@example.com")
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["decisions"] == 2 and out["stored_quotes"] == 1
    assert out["pseudonym"].startswith("erased-") and "alice" not in out["pseudonym"]

    assert _state(sessions) == before  # learning data, money and OPE untouched
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)
                              .where(Decision.customer_id == "alice@example.com")) == 0  # fmt: skip
        erased = list(session.scalars(select(Decision).where(Decision.customer_id == out["pseudonym"])))
        assert len(erased) == 2 and all(d.context == {} for d in erased)
        assert session.scalar(select(func.count()).select_from(QuoteIdempotency)) == 0
        audit = session.scalars(select(AuditEntry).where(AuditEntry.entity == "customer")).one()
        assert audit.action == "erase" and audit.entity_id == out["pseudonym"]
        assert "alice" not in json.dumps([audit.before, audit.after, audit.entity_id])
    # A later quote for the same id starts fresh: a new decision, not the sticky repeat.
    again = catalog.quote("TEA-1", customer="alice@example.com")["lines"][0]
    assert again["decision_id"] != first["decision_id"]


def test_every_worker_forgets_an_erased_customer(catalog, db_url, sessions):
    settings = load_settings(database_url=db_url, refresh_seconds=0.1)
    with TestClient(create_app(settings)) as other:
        headers = catalog.headers(Role.CHECKOUT)
        body = {"customer_id": "bob", "lines": [{"sku": "TEA-1"}]}
        held = other.post("/v1/quotes", json=body, headers=headers).json()["lines"][0]
        # The other worker repeats its live quote to bob...
        assert other.post("/v1/quotes", json=body, headers=headers).json()["lines"][0][
            "decision_id"] == held["decision_id"]  # fmt: skip
        assert catalog.delete("/v1/customers/bob").status_code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            fresh = other.post("/v1/quotes", json={**body, "lines": [{"sku": "TEA-2"}]},
                               headers=headers)  # fmt: skip
            assert fresh.status_code == 201
            if other.app.state.pricing.sticky.lookup("bob", ["TEA-1"], utcnow())[0] == {}:
                break
            time.sleep(0.1)
        # ...and after the erasure it no longer knows him: a new decision.
        after = other.post("/v1/quotes", json=body, headers=headers).json()["lines"][0]
        assert after["decision_id"] != held["decision_id"]


def test_erasure_is_for_admins_and_validates_the_id(catalog):
    assert catalog.delete("/v1/customers/c-1", Role.ANALYST).status_code == 403
    assert catalog.delete("/v1/customers/c-1", Role.CHECKOUT).status_code == 403
    long = catalog.delete("/v1/customers/" + "x" * 129)
    assert long.status_code == 422 and long.json()["detail"][0]["field"] == "customer_id"
    unknown = catalog.delete("/v1/customers/nobody").json()
    assert (unknown["decisions"], unknown["exposures"], unknown["stored_quotes"]) == (0, 0, 0)
