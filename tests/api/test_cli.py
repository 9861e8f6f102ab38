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


def test_seed_demo_is_repeatable_and_revokes_old_demo_keys(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli(["seed-demo", "--database-url", url]) == 0
    first = capsys.readouterr().out
    assert "30 products (30 new" in first
    old_key = first.split("checkout")[1].split()[0]
    assert cli(["seed-demo", "--database-url", url]) == 0
    second = capsys.readouterr().out
    assert "30 products (0 new, 0 updated)" in second
    new_key = second.split("checkout")[1].split()[0]
    with TestClient(create_app(load_settings(database_url=url))) as client:
        body = {"customer_id": "c", "lines": [{"sku": "COF-001"}]}
        assert (
            client.post(
                "/v1/quotes", json=body, headers={"Authorization": f"Bearer {old_key}"}
            ).status_code
            == 401
        )
        response = client.post(
            "/v1/quotes", json=body, headers={"Authorization": f"Bearer {new_key}"}
        )
        assert response.status_code == 201


def test_invalid_environment_fails_at_start_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("PRICING_QUOTE_TTL_SECONDS", "later")
    assert cli(["migrate"]) == 2
    assert "PRICING_QUOTE_TTL_SECONDS" in capsys.readouterr().err
