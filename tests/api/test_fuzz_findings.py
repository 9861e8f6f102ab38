"""Inputs a schema fuzzer found to give 500s: each is now a 4xx naming the field, or a 200.

Found by a short schemathesis run against the demo (issue 15): audit paging with a huge id,
a model version beyond 64 bits, the guardrail preview with ``what_if_rounds: 1``, a CSV
import of binary bytes, an experiment with extreme numbers.
"""

from __future__ import annotations

import pytest

from api.security import Role
from tests.factories import publish, synthetic_posterior

HUGE = 2**64 + 7


def _fields(response) -> set[str]:
    detail = response.json()["detail"]
    return {d["field"] for d in detail} if isinstance(detail, list) else set()


def test_audit_paging_with_an_id_beyond_64_bits_is_a_422(api):
    response = api.get(f"/v1/audit?before_id={HUGE}", Role.ADMIN)
    assert response.status_code == 422, response.text
    assert _fields(response) == {"before_id"}


@pytest.mark.parametrize("suffix", ["", "/elasticities", "/netcdf"])
def test_a_model_version_beyond_32_bits_is_a_422(api, suffix):
    for version in (2**31, HUGE):
        response = api.get(f"/v1/models/{version}{suffix}", Role.ANALYST)
        assert response.status_code == 422, response.text
        assert _fields(response) == {"version"}


def test_the_largest_unknown_model_version_is_a_404(api):
    response = api.get(f"/v1/models/{2**31 - 1}", Role.ANALYST)
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_preview_with_very_few_what_if_rounds_answers(catalog, sessions, client, rounds):
    publish(sessions, synthetic_posterior(spread=0.5))
    client.app.state.pricing.posterior.refresh()
    for n, customer in enumerate(("c-1", "c-2", "c-3", "c-4")):
        for line in catalog.quote("TEA-1", "TEA-2", customer=customer)["lines"]:
            outcome = {"decision_id": line["decision_id"], "converted": n % 2 == 0}
            if outcome["converted"]:
                outcome |= {"quantity": 1, "revenue": line["price"], "currency": line["currency"]}
            sent = catalog.post("/v1/outcomes", Role.CHECKOUT, json=outcome)
            assert sent.status_code == 201, sent.text
    body = {"rules": [{"scope": "global", "max_discount": 0.2}], "what_if_rounds": rounds}
    response = catalog.post("/v1/guardrails/preview", Role.MERCHANDISER, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["what_if"]["rounds"] <= rounds


@pytest.mark.parametrize(
    "payload",
    [b"\x00\x01\x02sku,name\n", b"sku,name,category,list_price,unit_cost,currency\n\x00,a,b,1,1,USD\n",
     b"\xff\xfe\x00\x00garbage",
     b'sku,name,category,list_price,unit_cost,currency\n"' + b"a" * 200_000 + b'",x,tea,1,1,USD\n',
     b"sku,name,category,list_price,unit_cost,currency\nA\rB,x,tea,1.00,0.50,USD\n"],
    ids=["nul-header", "nul-row", "not-utf8", "huge-field", "carriage-return"],
)  # fmt: skip
def test_a_csv_import_of_binary_bytes_is_a_422(catalog, payload):
    response = catalog.post(
        "/v1/products:import", Role.MERCHANDISER, content=payload,
        headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert _fields(response)


@pytest.mark.parametrize(
    ("variant", "field"),
    [({"guardrail_version": HUGE}, "variants[1].guardrail_version"),
     ({"guardrail_version": 2**31}, "variants[1].guardrail_version"),
     ({"allocation": 5e-324}, "variants"),
     ({"exploration_epsilon": 1e-310}, None)],
)  # fmt: skip
def test_an_experiment_with_extreme_numbers_is_stored_or_refused_by_field(api, variant, field):
    arms = [{"name": "control", "policy": "control", "allocation": 0.5},
            {"name": "engine", "policy": "engine", "allocation": 0.5, **variant}]  # fmt: skip
    body = {"name": "extreme", "variants": arms}
    response = api.put("/v1/experiments/extreme", Role.ANALYST, json=body)
    if field is None:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422, response.text
        assert field in _fields(response)


@pytest.mark.parametrize("setting", ["max_increase", "min_margin", "max_change", "segment_gap"])
def test_guardrails_with_extreme_numbers_are_stored_or_refused_by_field(catalog, setting):
    rules = {"rules": [{"scope": "global", setting: 1e308}]}
    for response in (
        catalog.post("/v1/guardrails/preview", Role.MERCHANDISER, json=rules | {"what_if_rounds": 0}),
        catalog.put("/v1/guardrails", Role.MERCHANDISER, json=rules),
    ):
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert any(setting in f for f in _fields(response)), response.text
    catalog.quote("TEA-1", "TEA-2")  # whatever was stored, quoting still works
