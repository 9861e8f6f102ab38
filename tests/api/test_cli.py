import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main as cli
from api.settings import load_settings


def test_migrate_then_create_key_prints_a_working_key(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["migrate", "--database-url", url]) == 0
    assert "database at revision" in capsys.readouterr().out
    assert cli(["create-key", "--role", "analyst", "--name", "ana", "--database-url", url]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("pe_")
    with TestClient(create_app(load_settings(database_url=url))) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/products", headers=headers).status_code == 200
        assert client.get("/v1/keys", headers=headers).status_code == 403


def test_create_key_on_an_unmigrated_database_fails_clearly(tmp_path, capsys):
    assert (
        cli(["create-key", "--role", "admin", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"])
        == 2
    )
    assert "pricing-engine migrate" in capsys.readouterr().err


def test_create_key_rejects_unknown_roles(capsys):
    with pytest.raises(SystemExit):
        cli(["create-key", "--role", "root"])


def _key(output: str, role: str = "checkout") -> str:
    return output.split(f"\n  {role}")[1].split()[0]


def _status(client: TestClient, key: str) -> int:
    body = {"customer_id": "c", "lines": [{"sku": "COF-001"}]}
    return client.post("/v1/quotes", json=body, headers={"Authorization": f"Bearer {key}"}).status_code


def test_seed_demo_is_repeatable_and_keeps_its_keys_until_rotated(tmp_path, capsys):
    db = tmp_path / "demo.db"
    url = f"sqlite:///{db}"
    assert cli(["seed-demo", "--database-url", url]) == 0
    first = capsys.readouterr().out
    assert "30 products (30 new" in first and "guardrails: version 1 stored" in first
    keys_file = tmp_path / "demo.db.demo-keys.json"
    assert keys_file.stat().st_mode & 0o777 == 0o600  # readable only by the user
    key = _key(first)
    assert cli(["seed-demo", "--database-url", url]) == 0
    second = capsys.readouterr().out
    assert "30 products (0 new, 0 updated)" in second and "kept from the first run" in second
    assert "guardrails: version 1 in effect (kept)" in second
    assert _key(second) == key  # the first run's keys still work after a restart
    assert cli(["seed-demo", "--database-url", url, "--rotate-keys"]) == 0
    rotated = _key(capsys.readouterr().out)
    assert rotated != key
    with TestClient(create_app(load_settings(database_url=url))) as client:
        assert _status(client, key) == 401  # rotation revokes the old keys
        assert _status(client, rotated) == 201
        assert client.get("/v1/guardrails", headers={"Authorization": f"Bearer {rotated}"}).status_code == 403
        analyst = json.loads(keys_file.read_text())["analyst"]
        guardrails = client.get("/v1/guardrails", headers={"Authorization": f"Bearer {analyst}"})
        assert guardrails.status_code == 200 and guardrails.json()["rules"]


def test_seed_demo_prints_a_customer_whose_quote_is_personalized(tmp_path, capsys):
    from api.db import make_engine, make_session_factory
    from api.simulate import DEMO_EXPERIMENT, _experiment
    from benchmarks.systems import demo_catalog, publish, synthetic_posterior

    db = tmp_path / "demo.db"
    url = f"sqlite:///{db}"
    assert cli(["seed-demo", "--database-url", url]) == 0
    engine = make_engine(url)
    _experiment(make_session_factory(engine))  # the demo experiment, as --simulate starts it
    engine.dispose()
    segments, skus = demo_catalog()
    publish(db, synthetic_posterior(segments, skus, 200, seed=1))
    capsys.readouterr()
    assert cli(["seed-demo", "--database-url", url]) == 0
    out = capsys.readouterr().out
    command = next(line for line in out.splitlines() if "curl" in line)
    body = json.loads(command.split("-d '")[1].rstrip("'"))
    with TestClient(create_app(load_settings(database_url=url))) as client:
        response = client.post("/v1/quotes", json=body,
                               headers={"Authorization": f"Bearer {_key(out)}"})  # fmt: skip
    assert response.status_code == 201, response.text
    for line in response.json()["lines"]:
        assert line["personalized"] is True, line
        assert f"experiment:{DEMO_EXPERIMENT}:engine" in line["reasons"], line


def test_invalid_environment_fails_at_start_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("PRICING_QUOTE_TTL_SECONDS", "later")
    assert cli(["migrate"]) == 2
    assert "PRICING_QUOTE_TTL_SECONDS" in capsys.readouterr().err


def test_help_is_plain_text_and_lists_every_command(capsys):
    import argparse

    from api.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert set(commands) >= {"serve", "worker", "seed-demo", "export-feedback", "import-history"}
    for name in commands:
        assert f"\n  {name} " in text, name
    assert "``" not in text and ":data:" not in text
