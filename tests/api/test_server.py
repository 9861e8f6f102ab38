"""The real server, as a separate process: the demo flow, and a crash that loses nothing."""

from __future__ import annotations

import contextlib
import json
import re
import signal
from collections.abc import Iterator

import httpx

from api.cli import main as cli
from tests.servers import servers


@contextlib.contextmanager
def _server(db_url: str) -> Iterator[str]:
    # As served by default: the writer's transactions in a writer process (tests/conftest.py
    # turns it off for the in-process apps only).
    with servers(db_url, 1, PRICING_WRITER_PROCESS="1") as [(base, process)]:
        try:
            yield base
        finally:
            # SIGKILL: no graceful shutdown, as in a crash or an OOM kill.
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)


def _keys(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(checkout|merchandiser|analyst|admin)\s+(pe_\S+)$", output, re.M))


def test_demo_serves_list_prices_and_a_crash_keeps_decisions_and_outcomes(db_url, capsys, tmp_path):
    assert cli(["seed-demo", "--database-url", db_url, "--keys-file", str(tmp_path / "keys.json")]) == 0
    keys = _keys(capsys.readouterr().out)
    assert set(keys) == {"checkout", "merchandiser", "analyst", "admin"}
    checkout = {"Authorization": f"Bearer {keys['checkout']}"}
    analyst = {"Authorization": f"Bearer {keys['analyst']}"}
    quote_body = {"customer_id": "c-42", "segment": "loyalty",
                  "lines": [{"sku": "COF-001", "quantity": 1}, {"sku": "TEA-002", "quantity": 2}]}  # fmt: skip

    with _server(db_url) as base:
        quote = httpx.post(f"{base}/v1/quotes", json=quote_body, headers=checkout).json()
        assert [line["price"] for line in quote["lines"]] == [
            line["list_price"] for line in quote["lines"]
        ]
        decision = quote["lines"][0]["decision_id"]
        outcome = {"decision_id": decision, "converted": True, "quantity": 1,
                   "revenue": quote["lines"][0]["price"]}  # fmt: skip
        assert httpx.post(f"{base}/v1/outcomes", json=outcome, headers=checkout).status_code == 201
        assert httpx.post(f"{base}/v1/outcomes", json=outcome, headers=checkout).status_code == 200

    with _server(db_url) as base:
        stored = httpx.get(f"{base}/v1/decisions", headers=analyst).json()["items"]
        assert {d["id"] for d in stored} == {line["decision_id"] for line in quote["lines"]}
        by_id = {d["id"]: d for d in stored}
        assert by_id[decision]["outcome"]["revenue"] == quote["lines"][0]["price"]
        assert by_id[quote["lines"][1]["decision_id"]]["outcome"] is None
        # The outcome is still there once: a retry after the restart is a duplicate.
        assert httpx.post(f"{base}/v1/outcomes", json=outcome, headers=checkout).status_code == 200


def test_serve_refuses_an_unmigrated_database(tmp_path, capsys):
    assert cli(["serve", "--database-url", f"sqlite:///{tmp_path / 'new.db'}"]) == 2
    assert "pricing-engine migrate" in capsys.readouterr().err


def test_http_driver_against_a_running_server(db_url, capsys, tmp_path):
    """python -m experiments.http_driver: load a market into a real server, send visitors
    through quote -> simulated purchase -> outcome, every decision and outcome stored."""
    from sqlalchemy import func, select

    from api.db import make_engine, make_session_factory
    from api.orm import Decision, Outcome
    from experiments import http_driver

    keys = {}
    for role in ("admin", "checkout"):
        assert (
            cli(["create-key", "--role", role, "--name", f"drv-{role}", "--database-url", db_url])
            == 0
        )
        keys[role] = capsys.readouterr().out.strip().splitlines()[-1]
    with _server(db_url) as base:
        argv = ["--url", base, "--admin-key", keys["admin"], "--checkout-key", keys["checkout"],
                "--visitors", "120", "--segments", "2", "--skus", "3", "--context-features", "1",
                "--every", "40", "--json"]  # fmt: skip
        assert http_driver.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["visitors"] == 120 and len(result["curve"]) == 3
    assert 0 < result["expected_share_of_oracle"] <= 1
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 120
        assert session.scalar(select(func.count()).select_from(Outcome)) == 120
        assert session.scalar(select(func.count()).where(Decision.context_key != "")) == 120
    engine.dispose()
