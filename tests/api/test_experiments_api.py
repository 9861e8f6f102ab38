"""Experiments through the API: definition, assignment, control/holdout semantics, results,
bandit-feedback export and the guardrail what-if."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.orm import Decision, utcnow
from api.security import Role
from api.services.demand_models import load_cells
from api.settings import load_settings
from tests.factories import publish, synthetic_posterior

M, A, C = Role.MERCHANDISER, Role.ANALYST, Role.CHECKOUT

SPLIT = {
    "name": "Engine vs list price",
    "variants": [
        {"name": "control", "policy": "control", "allocation": 0.5},
        {"name": "engine", "policy": "engine", "allocation": 0.5},
    ],
    "guardrail_metrics": [{"metric": "conversion_rate", "max_relative_drop": 0.05}],
}


def serve(api, sessions):
    publish(sessions, synthetic_posterior())
    api.client.app.state.pricing.posterior.refresh()


def start(api, key="E1", body=SPLIT):
    assert api.put(f"/v1/experiments/{key}", A, json=body).status_code == 201
    response = api.post(f"/v1/experiments/{key}/start", A)
    assert response.status_code == 200, response.text
    api.client.app.state.pricing.experiments.invalidate()


BAD = [
    ({"variants": [{"name": "a", "policy": "control", "allocation": 0.5},
                   {"name": "b", "policy": "engine", "allocation": 0.4}]}, "variants"),
    ({"variants": [{"name": "a", "policy": "control", "allocation": 0.5},
                   {"name": "a", "policy": "engine", "allocation": 0.5}]}, "variants[1].name"),
    ({"variants": [{"name": "a", "policy": "control", "allocation": 0.5, "exploration_epsilon": 0.1},
                   {"name": "b", "policy": "engine", "allocation": 0.5}]}, "variants[0].policy"),
    ({"variants": [{"name": "a", "policy": "control", "allocation": 0.5},
                   {"name": "b", "policy": "engine", "allocation": 0.5, "guardrail_version": 99}]},
     "variants[1].guardrail_version"),
    ({"variants": [{"name": "a", "policy": "bandit", "allocation": 1.0},
                   {"name": "b", "policy": "engine", "allocation": 0.0}]}, "variants[0].policy"),
    ({"variants": [{"name": "a", "policy": "control", "allocation": 1.0}]}, "variants"),
    ({"guardrail_metrics": [{"metric": "happiness", "max_relative_drop": 0.1}]}, "guardrail_metrics[0].metric"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_experiments_are_refused_naming_the_field(catalog, change, field):
    response = catalog.put("/v1/experiments/E1", A, json={**SPLIT, **change})
    assert response.status_code == 422, response.text
    assert field in [p["field"] for p in response.json()["detail"]]


def test_overlapping_experiments_need_distinct_layers(catalog):
    start(catalog, "E1")
    catalog.put("/v1/experiments/E2", A, json=SPLIT)
    clash = catalog.post("/v1/experiments/E2/start", A)
    assert clash.status_code == 409 and clash.json()["detail"][0]["field"] == "layer"
    catalog.put("/v1/experiments/E3", A, json={**SPLIT, "layer": "promo"})
    assert catalog.post("/v1/experiments/E3/start", A).status_code == 409  # E1 has no layer
    assert catalog.post("/v1/experiments/E1/stop", A).status_code == 200
    assert catalog.post("/v1/experiments/E3/start", A).status_code == 200
    catalog.put("/v1/experiments/E4", A, json={**SPLIT, "layer": "price"})
    assert (
        catalog.post("/v1/experiments/E4/start", A).status_code == 200
    )  # different layers overlap
    changed = catalog.put("/v1/experiments/E4", A, json=SPLIT)
    assert changed.status_code == 409  # a running experiment cannot change


def test_results_of_a_missing_experiment_or_variant_name_the_field(catalog):
    missing = catalog.get("/v1/experiments/NOPE/results", A)
    assert missing.status_code == 404 and missing.json()["detail"][0]["field"] == "key"
    catalog.put("/v1/experiments/E1", A, json=SPLIT)
    unknown = catalog.get("/v1/experiments/E1/results?baseline=other", A)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "baseline"
    empty = catalog.get("/v1/experiments/E1/results", A).json()  # no visitors: messages, not errors
    assert empty["variants"][0]["visitors"] == 0 and empty["messages"]
    assert all(lift["estimate"] is None and lift["message"] for lift in empty["lifts"])


def _arm(line):
    """The experiment arm a quote line names in its reasons (``experiment:KEY:ARM``)."""
    return next(r.rsplit(":", 1)[1] for r in line["reasons"] if r.startswith("experiment:"))


def test_assignment_is_deterministic_and_follows_the_allocation(catalog, sessions, db_url):
    serve(catalog, sessions)
    start(catalog)
    first = {}
    for i in range(200):
        quote = catalog.quote("TEA-1", customer=f"u{i}")
        first[f"u{i}"] = _arm(quote["lines"][0])
    split = Counter(first.values())
    assert 70 <= split["engine"] <= 130  # 50/50 (binomial sd ~7)
    # A fresh app (another worker, or after a restart) assigns the same way.
    app = create_app(load_settings(database_url=db_url))
    with TestClient(app) as other:
        headers = {"Authorization": f"Bearer {catalog.keys[C]}"}
        app.state.pricing.posterior.refresh()
        for i in range(0, 200, 7):
            body = {"customer_id": f"u{i}", "lines": [{"sku": "TEA-2"}]}
            line = other.post("/v1/quotes", json=body, headers=headers).json()["lines"][0]
            assert _arm(line) == first[f"u{i}"]


def test_control_gets_list_prices_and_no_promotions_and_holdout_never_trains(catalog, sessions):
    serve(catalog, sessions)
    catalog.put(
        "/v1/promotions/SPRING", M, json={"name": "s", "type": "percent_off", "percent_off": "10"}
    )
    body = {**SPLIT, "variants": [
        {"name": "control", "policy": "control", "allocation": 0.5, "holdout": True},
        {"name": "engine", "policy": "engine", "allocation": 0.5}]}  # fmt: skip
    start(catalog, body=body)
    lines = [catalog.quote("TEA-1", customer=f"h{i}")["lines"][0] for i in range(40)]
    with sessions() as session:
        rows = [session.get(Decision, uuid.UUID(line["decision_id"])) for line in lines]
    control = [r for r in rows if r.experiment_variant == "E1:control"]
    engine = [r for r in rows if r.experiment_variant == "E1:engine"]
    assert control and engine
    assert all(
        r.price_minor == 1000 and r.promotion is None and not r.personalized for r in control
    )
    assert all(not r.learn for r in control) and all(r.learn for r in engine)
    for line in lines:
        catalog.post(
            "/v1/outcomes", C, json={"decision_id": line["decision_id"], "converted": False}
        )
    with sessions() as session:
        cells = load_cells(session, until=utcnow() + timedelta(seconds=1))
    assert cells.n_trials == len(engine)  # holdout decisions are reported but never learned from


def test_results_report_lifts_srm_and_do_no_harm(catalog, sessions):
    serve(catalog, sessions)
    start(catalog)
    rng = np.random.default_rng(3)
    revenue_by_variant: dict[str, list[str]] = {}
    for i in range(120):
        quote = catalog.quote("TEA-1", customer=f"r{i}")
        line = quote["lines"][0]
        bought = bool(rng.random() < 0.4)
        body = {"decision_id": line["decision_id"], "converted": bought}
        if bought:
            body |= {"quantity": 1, "revenue": line["final_price"]}
            arm = next(r for r in line["reasons"] if r.startswith("experiment:E1:")).split(":")[2]
            revenue_by_variant.setdefault(arm, []).append(line["final_price"])
        assert catalog.post("/v1/outcomes", C, json=body).status_code == 201
    results = catalog.get("/v1/experiments/E1/results", A).json()
    assert results["baseline"] == "control"
    by_name = {v["name"]: v for v in results["variants"]}
    assert sum(v["visitors"] for v in by_name.values()) == 120
    control = by_name["control"]
    # Money as decimal strings in the experiment's currency: exact totals, and per-visitor
    # means with two more decimals than the currency.
    assert results["currency"] == "USD" and control["currency"] == "USD"
    revenue = Decimal(control["revenue"])
    assert isinstance(control["revenue"], str) and revenue.as_tuple().exponent == -2
    paid = sum(Decimal(line) for line in revenue_by_variant["control"])
    assert revenue == paid
    assert Decimal(control["revenue_per_visitor"]) == (revenue / control["visitors"]).quantize(
        Decimal("0.0001")
    )
    lift = next(x for x in results["lifts"] if x["metric"] == "conversion_rate")
    assert lift["variant"] == "engine" and lift["lower"] < lift["estimate"] < lift["upper"]
    assert 0 <= lift["prob_better"] <= 1 and lift["expected_loss"] >= 0
    assert results["srm"]["flagged"] is False and results["srm"]["p_value"] > 0.001
    assert results["do_no_harm"][0]["status"] in {"ok", "harm", "inconclusive"}


def test_bandit_feedback_export_follows_obp_conventions(catalog, sessions, tmp_path, db_url):
    serve(catalog, sessions)
    lines = [catalog.quote("TEA-1", "TEA-2", customer=f"f{i}")["lines"] for i in range(10)]
    for pair in lines:
        catalog.post("/v1/outcomes", C, json={"decision_id": pair[0]["decision_id"], "converted": True,
                                              "quantity": 1, "revenue": pair[0]["final_price"]})  # fmt: skip
    response = catalog.get("/v1/logs/bandit-feedback", A)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        meta = json.loads(archive.read("feedback.json"))
        with np.load(io.BytesIO(archive.read("feedback.npz"))) as npz:
            arrays = {k: npz[k] for k in npz.files}
    assert meta["n_rounds"] == 10  # TEA-2 lines have no outcome and an open window: left out
    assert arrays["reward"].shape == arrays["action"].shape == arrays["pscore"].shape == (10,)
    assert (arrays["action"] < meta["n_actions"]).all() and (arrays["position"] == 0).all()
    # Profit in currency units: TEA-1 sells for at most 10.00 at a unit cost of 4.00, and
    # never below cost (the implicit floor), so each converted round earns (0, 6.00].
    assert ((arrays["reward"] >= 0) & (arrays["reward"] <= 6.00 + 1e-9)).all()
    assert ((arrays["pscore"] > 0) & (arrays["pscore"] <= 1)).all()
    assert arrays["context"].shape == (10, len(meta["context_columns"]))
    from api.cli import main

    assert main(["export-feedback", str(tmp_path / "out"), "--database-url", db_url]) == 0
    assert json.loads((tmp_path / "out" / "feedback.json").read_text())["n_rounds"] == 10


def test_guardrail_preview_estimates_the_proposal_off_policy(catalog, sessions):
    serve(catalog, sessions)
    rng = np.random.default_rng(0)
    for i in range(150):
        line = catalog.quote("TEA-1", customer=f"g{i}")["lines"][0]
        bought = bool(rng.random() < 0.3)
        body = {"decision_id": line["decision_id"], "converted": bought}
        if bought:
            body |= {"quantity": 1, "revenue": line["price"]}
        catalog.post("/v1/outcomes", C, json=body)
    proposal = {"rules": [{"scope": "global", "max_discount": 0.1}], "skus": ["TEA-1"]}
    preview = catalog.post("/v1/guardrails/preview", M, json=proposal).json()
    what_if = preview["what_if"]
    assert what_if["rounds"] > 100
    names = [e["estimator"] for e in what_if["proposed"]]
    assert names == ["ips", "snips", "dr"]
    for estimate in what_if["proposed"] + what_if["current"]:
        assert estimate["lower"] <= estimate["value"] <= estimate["upper"]
    assert what_if["logged_profit_per_decision"] > 0
