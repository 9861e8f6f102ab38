"""Schemathesis: the OpenAPI document the service publishes, sent to a running demo server.

Every operation, with inputs generated from its schema, is sent with the key of each role:
no response may be a 5xx, and every response must match the schema it documents. The
example count per operation is bounded so the run fits CI (``PRICING_FUZZ_EXAMPLES``
raises it for a longer local run).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.cli import main as cli
from tests.servers import servers

EXAMPLES = int(os.environ.get("PRICING_FUZZ_EXAMPLES", "6"))


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A demo server (catalog, guardrails, promotions, experiment, keys) with a served model."""
    from benchmarks.systems import demo_catalog, publish, synthetic_posterior

    db = tmp_path_factory.mktemp("fuzz") / "demo.db"
    url = f"sqlite:///{db}"
    assert cli(["seed-demo", "--database-url", url]) == 0
    segments, skus = demo_catalog()
    publish(db, synthetic_posterior(segments, skus, 100, seed=2))
    keys = json.loads(db.with_name(db.name + ".demo-keys.json").read_text())
    with servers(url, 1) as [(base, _process)]:
        yield base, keys


def _document() -> dict[str, Any]:
    """The OpenAPI document the server publishes (built without starting it)."""
    from api.app import create_app
    from api.settings import load_settings

    return create_app(load_settings(database_url=f"sqlite:///{tempfile.gettempdir()}/pricing-fuzz-schema.db")).openapi()


schema = schemathesis.openapi.from_dict(_document())
#: One pytest test per operation (ids like ``POST /v1/quotes``), so that parallel runners
#: (pytest-xdist) see distinct tests; schemathesis's own parametrize gives them one id.
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize(
    "operation", OPERATIONS, ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS]
)
def test_no_5xx_and_every_response_matches_its_schema(
    operation: Any, live_demo: tuple[str, dict[str, str]]
) -> None:
    base, keys = live_demo

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def check(case: Any) -> None:
        for role, key in sorted(keys.items()):
            response = case.call_and_validate(
                base_url=base,
                headers={"Authorization": f"Bearer {key}"},
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )
            assert response.status_code < 500, (role, response.status_code, response.text[:500])

    check()
