"""Role matrix: every endpoint × every role, plus missing and wrong keys."""

import uuid

import pytest

from api.security import Role
from tests.factories import publish, synthetic_posterior

C, M, A, X = Role.CHECKOUT, Role.MERCHANDISER, Role.ANALYST, Role.ADMIN
PRODUCT = {
    "name": "n",
    "category": "tea",
    "list_price": "1.00",
    "unit_cost": "0.50",
    "currency": "USD",
}

EXPERIMENT = {
    "name": "e",
    "variants": [
        {"name": "control", "policy": "control", "allocation": 0.5},
        {"name": "engine", "policy": "engine", "allocation": 0.5},
    ],
}
PROMOTION = {"name": "Spring", "type": "percent_off", "percent_off": "10"}

# (method, path template, body, roles allowed). Admin may do everything.
MATRIX = [
    ("POST", "/v1/quotes", {"customer_id": "c", "lines": [{"sku": "TEA-1"}]}, {C, X}),
    ("POST", "/v1/outcomes", {"decision_id": "{decision}", "converted": False}, {C, X}),
    ("POST", "/v1/outcomes/batch", {"outcomes": [{"decision_id": "{decision}", "converted": False}]}, {C, X}),
    ("PUT", "/v1/products/{sku}", PRODUCT, {M, X}),
    ("POST", "/v1/products:import", [{**PRODUCT, "sku": "IMP-1"}], {M, X}),
    ("GET", "/v1/products", None, {M, A, X}),
    ("GET", "/v1/products/{sku}", None, {M, A, X}),
    ("GET", "/v1/segments", None, {M, A, X}),
    ("GET", "/v1/segments/{key}", None, {M, A, X}),
    ("PUT", "/v1/segments/{key}", {"name": "Loyal"}, {M, X}),
    ("DELETE", "/v1/segments/{key}", None, {M, X}),
    ("GET", "/v1/decisions", None, {A, X}),
    ("GET", "/v1/guardrails", None, {M, A, X}),
    ("PUT", "/v1/guardrails", {"rules": [{"scope": "global", "max_discount": 0.2}]}, {M, X}),
    ("POST", "/v1/guardrails/preview", {"rules": [{"scope": "global", "max_discount": 0.2}]}, {M, X}),
    ("GET", "/v1/models", None, {M, A, X}),
    ("GET", "/v1/models/{version}", None, {M, A, X}),
    ("GET", "/v1/models/{version}/elasticities", None, {M, A, X}),
    ("GET", "/v1/models/{version}/netcdf", None, {M, A, X}),
    ("GET", "/v1/decisions/{decision_id}", None, {A, X}),
    # a checkout key reads the explanations of the decisions it asked for (this one's)
    ("GET", "/v1/decisions/{decision_id}/explanation", None, {A, C, X}),
    ("GET", "/v1/audits/price-dispersion", None, {A, X}),
    ("GET", "/v1/jurisdictions", None, {M, A, X}),
    ("PUT", "/v1/jurisdictions", {"rules": [{"code": "US-NY", "disclosure": "d"}]}, {M, X}),
    ("DELETE", "/v1/customers/{customer_id}", None, {X}),
    ("POST", "/v1/keys", {"name": "k", "role": "analyst"}, {X}),
    ("GET", "/v1/keys", None, {X}),
    ("DELETE", "/v1/keys/{key_id}", None, {X}),
    ("GET", "/v1/audit", None, {X}),
    ("PUT", "/v1/promotions/{key}", PROMOTION, {M, X}),
    ("GET", "/v1/promotions", None, {M, A, X}),
    ("GET", "/v1/promotions/{key}", None, {M, A, X}),
    ("GET", "/v1/promotions/{key}/versions", None, {M, A, X}),
    ("GET", "/v1/context-schema", None, {M, A, X}),
    ("PUT", "/v1/experiments/{key}", EXPERIMENT, {M, A, X}),
    ("POST", "/v1/experiments/{key}/start", None, {M, A, X}),
    ("POST", "/v1/experiments/{key}/stop", None, {M, A, X}),
    ("GET", "/v1/experiments", None, {M, A, X}),
    ("GET", "/v1/experiments/{key}", None, {M, A, X}),
    ("GET", "/v1/experiments/{key}/results", None, {M, A, X}),
    ("GET", "/v1/logs/bandit-feedback", None, {A, X}),
    ("PUT", "/v1/context-schema", {"features": [{"name": "device", "kind": "categorical", "levels": ["desktop", "mobile"]}]}, {A, X}),
]  # fmt: skip
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


def test_matrix_covers_every_route(client):
    paths = client.app.openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == {(m, p) for m, p, _, _ in MATRIX} | PUBLIC


def _fill(catalog, sessions_key_id, template, body):
    decision = catalog.quote("TEA-1")["lines"][0]["decision_id"]
    catalog.put("/v1/promotions/SPRING", X, json=PROMOTION)
    key = "SPRING" if "promotions" in template else "loyalty"
    if "experiments/{key}" in template:  # a fresh draft each time (start/stop change state)
        key = f"EXP-{uuid.uuid4().hex[:8]}"
        body = {**EXPERIMENT, "layer": key}  # own layer: never overlaps another running one
        assert catalog.put(f"/v1/experiments/{key}", X, json=body).status_code == 201
        if template.endswith("/stop"):
            assert catalog.post(f"/v1/experiments/{key}/start", X).status_code == 200
    values = {"sku": "TEA-1", "key": key, "decision_id": decision, "key_id": sessions_key_id,
              "version": _latest_version(catalog), "customer_id": "c-erase"}  # fmt: skip
    path = template.format(**values)
    if body is not None:
        body = _substitute(body, decision)
    return path, body


def _latest_version(api):
    models = api.get("/v1/models", X).json()
    return models[0]["version"] if models else 0


def _substitute(body, decision):
    if isinstance(body, dict):
        return {k: _substitute(v, decision) for k, v in body.items()}
    if isinstance(body, list):
        return [_substitute(v, decision) for v in body]
    return decision if body == "{decision}" else body


@pytest.mark.parametrize(("method", "template", "body", "allowed"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])  # fmt: skip
def test_role_matrix(catalog, sessions, method, template, body, allowed):
    publish(sessions, synthetic_posterior())
    spare_key = catalog.post("/v1/keys", X, json={"name": "spare", "role": "analyst"}).json()["id"]
    for role in Role:
        path, filled = _fill(catalog, spare_key, template, body)
        response = catalog.request(method, path, role, json=filled)
        if role in allowed:
            assert response.status_code < 400, (role, response.status_code, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
            assert role.value in response.json()["detail"]
    path, filled = _fill(catalog, spare_key, template, body)
    missing = catalog.request(method, path, None, json=filled)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = catalog.request(
        method, path, None, json=filled, headers={"Authorization": "Bearer pe_nope_x"}
    )
    assert wrong.status_code == 401
    basic = catalog.request(method, path, None, json=filled, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_public_endpoints_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded"  # no model fitted yet: list prices, flagged fallback
    assert ready["degraded"] == ["no demand model loaded: quotes get list prices, flagged fallback"]
    assert "pricing_http_requests_total" in client.get("/metrics").text


def test_a_revoked_key_stops_working(api):
    created = api.post("/v1/keys", X, json={"name": "temp", "role": "analyst"}).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert api.client.get("/v1/products", headers=headers).status_code == 200
    assert api.delete(f"/v1/keys/{created['id']}", X).json()["revoked_at"] is not None
    assert api.client.get("/v1/products", headers=headers).status_code == 401


def test_keys_are_stored_hashed_and_listed_without_secrets(api, sessions):
    from sqlalchemy import select

    from api.orm import ApiKey

    created = api.post("/v1/keys", X, json={"name": "hashed", "role": "checkout"}).json()
    with sessions() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert created["key"] not in stored
    listing = api.get("/v1/keys", X).json()
    assert all("key" not in item for item in listing)
    assert created["prefix"] in created["key"]


def test_revoking_an_unknown_key_is_404(api):
    assert api.delete(f"/v1/keys/{uuid.uuid4()}", X).status_code == 404
