"""Bad input: every malformed request is a 4xx naming the field at fault, never a 500."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.security import Role

C, M = Role.CHECKOUT, Role.MERCHANDISER
LINE = {"sku": "TEA-1", "quantity": 1}
QUOTE = {"customer_id": "c", "lines": [LINE]}
PRODUCT = {
    "name": "n",
    "category": "tea",
    "list_price": "1.00",
    "unit_cost": "0.50",
    "currency": "USD",
}

# (case id, method, path, role, body, status, field)
CASES = [
    ("quote: no lines", "POST", "/v1/quotes", C, {**QUOTE, "lines": []}, 422, "lines"),
    ("quote: 101 lines", "POST", "/v1/quotes", C, {**QUOTE, "lines": [LINE] * 101}, 422, "lines"),
    ("quote: negative quantity", "POST", "/v1/quotes", C, {**QUOTE, "lines": [{"sku": "TEA-1", "quantity": -1}]}, 422, "lines[0].quantity"),
    ("quote: quantity as string", "POST", "/v1/quotes", C, {**QUOTE, "lines": [{"sku": "TEA-1", "quantity": "2"}]}, 422, "lines[0].quantity"),
    ("quote: fractional quantity", "POST", "/v1/quotes", C, {**QUOTE, "lines": [{"sku": "TEA-1", "quantity": 1.5}]}, 422, "lines[0].quantity"),
    ("quote: unknown sku", "POST", "/v1/quotes", C, {**QUOTE, "lines": [{"sku": "NOPE"}]}, 422, "lines[0].sku"),
    ("quote: sku with spaces", "POST", "/v1/quotes", C, {**QUOTE, "lines": [{"sku": "a b"}]}, 422, "lines[0].sku"),
    ("quote: missing customer", "POST", "/v1/quotes", C, {"lines": [LINE]}, 422, "customer_id"),
    ("quote: customer not a string", "POST", "/v1/quotes", C, {**QUOTE, "customer_id": 7}, 422, "customer_id"),
    ("quote: lines not a list", "POST", "/v1/quotes", C, {**QUOTE, "lines": "TEA-1"}, 422, "lines"),
    ("quote: unknown field", "POST", "/v1/quotes", C, {**QUOTE, "coupon": "X"}, 422, "coupon"),
    ("quote: protected context", "POST", "/v1/quotes", C, {**QUOTE, "context": {"gender": "f"}}, 422, "context.gender"),
    ("quote: nested context", "POST", "/v1/quotes", C, {**QUOTE, "context": {"device": {"a": 1}}}, 422, "context.device"),
    ("quote: bad jurisdiction", "POST", "/v1/quotes", C, {**QUOTE, "jurisdiction": "new york"}, 422, "jurisdiction"),
    ("quote: consent not bool", "POST", "/v1/quotes", C, {**QUOTE, "consent": {"personalization": "yes"}}, 422, "consent.personalization"),
    ("outcome: bad uuid", "POST", "/v1/outcomes", C, {"decision_id": "abc", "converted": True}, 422, "decision_id"),
    ("outcome: converted not bool", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": "yes"}, 422, "converted"),
    ("outcome: negative quantity", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": True, "quantity": -1}, 422, "quantity"),
    ("outcome: float revenue", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": True, "quantity": 1, "revenue": 9.99}, 422, "revenue"),
    ("outcome: integer revenue", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": True, "quantity": 1, "revenue": 15}, 422, "revenue"),
    ("promotion: integer budget", "PUT", "/v1/promotions/p-int", M, {"name": "p", "type": "percent_off", "percent_off": "10", "budget": 50, "currency": "USD"}, 422, "budget"),
    ("outcome: negative revenue", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": True, "quantity": 1, "revenue": "-1"}, 422, "revenue"),
    ("outcome: converted without units", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": True}, 422, "quantity"),
    ("outcome: not converted with revenue", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": False, "revenue": "5.00"}, 422, "revenue"),
    ("outcome: naive timestamp", "POST", "/v1/outcomes", C, {"decision_id": "00000000-0000-0000-0000-000000000000", "converted": False, "occurred_at": "2026-01-01T00:00:00"}, 422, "occurred_at"),
    ("batch: empty", "POST", "/v1/outcomes/batch", C, {"outcomes": []}, 422, "outcomes"),
    ("batch: item wrong type", "POST", "/v1/outcomes/batch", C, {"outcomes": [{"decision_id": "00000000-0000-0000-0000-000000000000", "converted": 1}]}, 422, "outcomes[0].converted"),
    ("product: bad currency", "PUT", "/v1/products/X-1", M, {**PRODUCT, "currency": "XYZ"}, 422, "currency"),
    ("product: lower-case currency", "PUT", "/v1/products/X-1", M, {**PRODUCT, "currency": "usd"}, 422, "currency"),
    ("product: negative price", "PUT", "/v1/products/X-1", M, {**PRODUCT, "list_price": "-1.00"}, 422, "list_price"),
    ("product: zero price", "PUT", "/v1/products/X-1", M, {**PRODUCT, "list_price": "0"}, 422, "list_price"),
    ("product: float price", "PUT", "/v1/products/X-1", M, {**PRODUCT, "list_price": 1.5}, 422, "list_price"),
    ("product: text price", "PUT", "/v1/products/X-1", M, {**PRODUCT, "list_price": "cheap"}, 422, "list_price"),
    ("product: too many decimals", "PUT", "/v1/products/X-1", M, {**PRODUCT, "unit_cost": "0.505"}, 422, "unit_cost"),
    ("product: NaN price", "PUT", "/v1/products/X-1", M, {**PRODUCT, "list_price": "NaN"}, 422, "list_price"),
    ("product: huge price", "PUT", "/v1/products/X-1", M, {**PRODUCT, "list_price": "1e30"}, 422, "list_price"),
    ("product: missing name", "PUT", "/v1/products/X-1", M, {k: v for k, v in PRODUCT.items() if k != "name"}, 422, "name"),
    ("product: bad sku in path", "PUT", "/v1/products/%20x", M, PRODUCT, 422, "sku"),
    ("segment: empty name", "PUT", "/v1/segments/vip", M, {"name": ""}, 422, "name"),
    ("key: unknown role", "POST", "/v1/keys", Role.ADMIN, {"name": "k", "role": "root"}, 422, "role"),
    ("products: bad limit", "GET", "/v1/products?limit=0", M, None, 422, "limit"),
    ("decisions: bad cursor", "GET", "/v1/decisions?after=xyz", Role.ANALYST, None, 422, "after"),
    ("decisions: bad id", "GET", "/v1/decisions/not-a-uuid", Role.ANALYST, None, 422, "decision_id"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "role", "body", "status", "field"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_names_the_field(catalog, method, path, role, body, status, field):
    response = catalog.request(method, path, role, json=body)
    assert response.status_code == status, response.text
    fields = [problem["field"] for problem in response.json()["detail"]]
    assert field in fields, fields


@pytest.mark.parametrize("content", [b"", b"{", b"null", b"[]", b'"text"', b"\xff\xfe", b"{}" * 3])
@pytest.mark.parametrize("path", ["/v1/quotes", "/v1/outcomes", "/v1/outcomes/batch"])
def test_malformed_bodies_are_422(catalog, path, content):
    response = catalog.post(path, C, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    for problem in response.json()["detail"]:
        # A character offset is never reported as a field.
        assert not any(isinstance(p, int) for p in problem["loc"][:2]), problem
        assert not problem["field"].startswith("["), problem
    if content == b"":
        (problem,) = response.json()["detail"]
        assert problem["field"] == "body" and "missing" in problem["msg"], problem
    if content == b"{":
        (problem,) = response.json()["detail"]
        assert problem["field"] == "body" and "not valid JSON" in problem["msg"], problem


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/v1/quotes", "/v1/outcomes", "/v1/outcomes/batch", "/v1/products:import"]),
    body=st.one_of(
        json_values,
        st.fixed_dictionaries({"customer_id": json_values, "lines": st.lists(
            st.fixed_dictionaries({"sku": st.sampled_from(["TEA-1", "NOPE", ""]) | json_values,
                                   "quantity": json_values}), max_size=3)}),
        st.fixed_dictionaries({"decision_id": json_values, "converted": json_values,
                               "quantity": json_values, "revenue": json_values}),
    ),
)  # fmt: skip
def test_no_json_body_produces_a_server_error(catalog, path, body):
    role = M if path.endswith("import") else C
    response = catalog.post(
        path, role, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
