"""/docs a newcomer can use: a Bearer scheme, examples that validate and that work on the demo."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main as cli
from api.schemas.common import EXAMPLE_DECISION
from api.settings import load_settings

#: Path parameters of the example requests (a new SKU, segment, promotion or experiment).
PATH_VALUES = {"sku": "COF-101", "key": "docs-example"}


def _walk(node: Any, path: tuple[str, ...] = ()) -> Any:
    """Every (path, schema) in the document whose schema carries ``examples``."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and ("type" in node or "properties" in node or "$ref" in node):
            yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo database (catalog, promotions, guardrails, keys) with a published model."""
    from benchmarks.systems import demo_catalog, publish, synthetic_posterior

    db = tmp_path_factory.mktemp("docs") / "demo.db"
    url = f"sqlite:///{db}"
    assert cli(["seed-demo", "--database-url", url]) == 0
    segments, skus = demo_catalog()
    publish(db, synthetic_posterior(segments, skus, 100, seed=2))
    keys = json.loads(db.with_name(db.name + ".demo-keys.json").read_text())
    with TestClient(create_app(load_settings(database_url=url))) as client:
        yield client, keys


def test_the_openapi_document_declares_the_bearer_scheme(demo):
    client, _keys = demo
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    quote = document["paths"]["/v1/quotes"]["post"]
    assert quote["security"] and set(quote["security"][0]) <= set(schemes)


def test_every_example_in_the_schema_validates(demo):
    client, _keys = demo
    document = client.get("/openapi.json").json()
    found = list(_walk(document["components"]["schemas"], ("components", "schemas")))
    named = {p[2] for p, _ in found if len(p) == 3}
    # The bodies checkout, merchandisers and analysts send, and the quote they get back.
    assert {"QuoteRequest", "QuoteResponse", "OutcomeIn", "OutcomeBatchIn", "ProductIn",
            "GuardrailSetIn", "PromotionIn", "ExperimentIn", "SegmentIn", "KeyCreate"} <= named  # fmt: skip
    assert {"OutcomePublic", "OutcomeBatchOut", "ProductPublic", "ProductPage", "SegmentPublic",
            "KeyCreated", "GuardrailsPublic", "PromotionPublic", "ImportResult", "ResultsOut",
            "PreviewOut", "DecisionPage", "DecisionPublic", "ModelPublic", "Elasticity"} <= named  # fmt: skip
    for path, schema in found:
        root = {"components": document["components"], **{k: v for k, v in schema.items() if k != "examples"}}
        validator = jsonschema.Draft202012Validator(root)
        for example in schema["examples"]:
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, (".".join(path), example, errors)
    # Field examples name the demo catalog, not placeholders (a segment is not "SKU-001").
    assert "SKU-001" not in json.dumps(document)


def _request_examples(document: dict[str, Any]) -> list[tuple[str, str, Any]]:
    out = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            examples = [e["value"] for e in content.get("examples", {}).values()]
            examples += content.get("example", []) and [content["example"]]
            schema = content.get("schema", {})
            ref = schema.get("$ref", "")
            if ref:
                component = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
                examples += component.get("examples", [])
            examples += schema.get("examples", [])
            for example in examples:
                out.append((method.upper(), path, example))
    return out


def test_each_request_example_succeeds_against_the_demo(demo):
    client, keys = demo
    document = client.get("/openapi.json").json()
    examples = _request_examples(document)
    covered = {(m, p) for m, p, _ in examples}
    assert {("POST", "/v1/quotes"), ("POST", "/v1/outcomes"), ("POST", "/v1/outcomes/batch"),
            ("PUT", "/v1/guardrails"), ("PUT", "/v1/promotions/{key}")} <= covered  # fmt: skip
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    quote_example = next(e for m, p, e in examples if (m, p) == ("POST", "/v1/quotes"))
    customers = iter(range(1000, 2000))
    for method, path, example in examples:
        body = copy.deepcopy(example)
        if EXAMPLE_DECISION in json.dumps(body):
            # Outcomes need a real decision: take one from a fresh quote of the quote example.
            fresh = {**quote_example, "customer_id": f"docs-{next(customers)}"}
            quoted = client.post("/v1/quotes", json=fresh, headers=admin).json()["lines"][0]
            text = json.dumps(body).replace(EXAMPLE_DECISION, quoted["decision_id"])
            text = text.replace('"18.89"', json.dumps(quoted["final_price"] or quoted["price"]))
            body = json.loads(text)
        url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
        response = client.request(method, url, json=body, headers=admin)
        assert response.status_code < 300, (method, path, body, response.text)
