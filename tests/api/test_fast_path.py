"""The direct route for plain quotes (api/fast_path.py) answers as the FastAPI route
would, and hands everything else to that route untouched."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from api.fast_path import QuoteFastPath
from api.orm import Decision
from api.security import Role


def _fast_path(api: Any) -> QuoteFastPath:
    layer = api.client.app.middleware_stack
    assert isinstance(layer, QuoteFastPath)  # the outermost layer
    return layer


def _decisions(sessions: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Decision)) or 0)


def test_a_plain_quote_takes_the_fast_path_and_answers_as_the_route_does(catalog, sessions):
    # The first quote authenticates the key through the route (nothing cached yet)...
    first = catalog.quote("TEA-1", "TEA-2", customer="c-1", segment="loyalty")
    fast = _fast_path(catalog)
    served = fast.served
    # ...later ones are answered directly.
    second = catalog.quote("TEA-1", "TEA-2", customer="c-2", segment="loyalty",
                           context={"device": "mobile"}, jurisdiction="US-NY")  # fmt: skip
    assert fast.served == served + 1
    assert first.keys() == second.keys()
    assert [line.keys() for line in first["lines"]] == [line.keys() for line in second["lines"]]
    assert [(x["sku"], x["price"]) for x in second["lines"]] == [("TEA-1", "10.00"), ("TEA-2", "4.99")]
    assert _decisions(sessions) == 4
    # Metrics count it under the route's template, as a routed request.
    metrics = catalog.get("/metrics", Role.ADMIN).text
    assert 'pricing_http_requests_total{method="POST",route="/v1/quotes",status="201"} 2.0' in metrics


def test_a_repeated_quote_on_the_fast_path_is_sticky(catalog):
    catalog.quote("TEA-1", customer="warm")
    one = catalog.quote("TEA-1", customer="c-9")
    two = catalog.quote("TEA-1", customer="c-9")
    assert one["lines"][0]["decision_id"] == two["lines"][0]["decision_id"]


def test_an_error_found_after_validation_is_rendered_by_the_fast_path(catalog, sessions):
    catalog.quote("TEA-1", customer="warm")
    fast = _fast_path(catalog)
    served = fast.served
    response = catalog.post("/v1/quotes", Role.CHECKOUT,
                            json={"customer_id": "c", "lines": [{"sku": "NOPE"}]})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "lines[0].sku"
    assert fast.served == served + 1
    assert _decisions(sessions) == 1


@pytest.mark.parametrize(
    ("case", "role", "kwargs", "status", "field"),
    [
        ("not JSON", Role.CHECKOUT, {"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 422, "body"),
        ("invalid body", Role.CHECKOUT, {"json": {"customer_id": "c", "lines": []}}, 422, "lines"),
        ("unknown field", Role.CHECKOUT, {"json": {"customer_id": "c", "lines": [{"sku": "TEA-1"}], "x": 1}}, 422, "x"),
        ("no key", None, {"json": {"customer_id": "c", "lines": [{"sku": "TEA-1"}]}}, 401, None),
        ("wrong role", Role.ANALYST, {"json": {"customer_id": "c", "lines": [{"sku": "TEA-1"}]}}, 403, None),
        ("bad idempotency key", Role.CHECKOUT,
         {"json": {"customer_id": "c", "lines": [{"sku": "TEA-1"}]}, "headers": {"Idempotency-Key": "a b"}},
         422, "Idempotency-Key"),
    ],
)  # fmt: skip
def test_anything_else_goes_to_the_route_with_its_body(catalog, sessions, case, role, kwargs, status, field):
    catalog.quote("TEA-1", customer="warm")  # the checkout key is now cached
    catalog.get("/v1/segments", Role.ANALYST)  # and the analyst's
    fast = _fast_path(catalog)
    served = fast.served
    response = catalog.post("/v1/quotes", role, **kwargs)
    assert response.status_code == status, (case, response.text)
    if field is not None:
        assert any(field in (p.get("field") or "") for p in response.json()["detail"]), response.text
    assert fast.served == served
    assert _decisions(sessions) == 1


def test_an_idempotent_retry_on_the_fast_path_returns_the_same_quote(catalog, sessions):
    catalog.quote("TEA-1", customer="warm")
    body = {"customer_id": "c-5", "lines": [{"sku": "TEA-2"}]}
    headers = {"Idempotency-Key": "cart-view-1"}
    first = catalog.post("/v1/quotes", Role.CHECKOUT, json=body, headers=headers)
    again = catalog.post("/v1/quotes", Role.CHECKOUT, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert _decisions(sessions) == 2
