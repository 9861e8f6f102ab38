"""Security basics: key digests, per-key rate limits, body size limits, CORS, log redaction,
key rotation from the command line."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.cli import main as cli
from api.orm import ApiKey, Decision
from api.protection import RateLimiter, log_config, redact
from api.security import Role
from api.services.keys import authenticate, create_key
from api.settings import load_settings
from tests.conftest import Api
from tests.servers import servers

QUOTE = {"customer_id": "c-1", "lines": [{"sku": "TEA-1", "quantity": 1}]}


def _app_api(db_url: str, keys: dict[Role, str], **settings: Any) -> Iterator[Api]:
    app = create_app(load_settings(database_url=db_url, **settings))
    with TestClient(app) as client:
        yield Api(client, keys)


@pytest.fixture
def limited_api(db_url: str, api_keys: dict[Role, str]) -> Iterator[Api]:
    """An app allowing each key bursts of 2 quote and 2 outcome requests, then one per 100 s."""
    yield from _app_api(db_url, api_keys, rate_limit_quotes=0.01, rate_limit_outcomes=0.01,
                        rate_limit_burst_seconds=200)  # fmt: skip


# ---- key digests --------------------------------------------------------------------


def test_a_peppered_key_is_stored_as_an_hmac_and_needs_the_pepper(sessions):
    pepper = b"server-secret"
    with sessions() as session:
        created = create_key(session, name="p", role=Role.ANALYST, actor=None, pepper=pepper)
    with sessions() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == created.prefix))
        assert row is not None
        assert row.hash_scheme == "hmac-sha256"
        assert row.key_hash != hashlib.sha256(created.key.encode()).hexdigest()
        assert created.key not in row.key_hash
        who = authenticate(session, key=created.key, pepper=pepper)
        assert who is not None and who.role is Role.ANALYST
        assert authenticate(session, key=created.key, pepper=b"another") is None
        assert authenticate(session, key=created.key, pepper=None) is None


def test_keys_made_before_a_pepper_keep_working_once_one_is_set(sessions):
    with sessions() as session:
        old = create_key(session, name="old", role=Role.CHECKOUT, actor=None)
    with sessions() as session:
        assert authenticate(session, key=old.key, pepper=b"set-later") is not None


@pytest.mark.parametrize("guess", [
    "", "pe_", "pe_zzzzzzzz_" + "a" * 43, "not-a-key", "pe_0123abcd_" + "a" * 43, "x" * 5000,
])  # fmt: skip
def test_malformed_or_guessed_keys_are_401(api, guess):
    response = api.client.get("/v1/products", headers={"Authorization": f"Bearer {guess}"})
    assert response.status_code == 401


def test_a_guess_with_a_real_prefix_is_refused(api, api_keys):
    real = api_keys[Role.ADMIN]
    guess = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    response = api.client.get("/v1/products", headers={"Authorization": f"Bearer {guess}"})
    assert response.status_code == 401


def test_the_server_pepper_applies_to_keys_made_through_the_api(db_url, api_keys, sessions):
    for api in _app_api(db_url, api_keys, key_pepper="pepper-1"):
        created = api.post("/v1/keys", Role.ADMIN, json={"name": "n", "role": "analyst"}).json()
        headers = {"Authorization": f"Bearer {created['key']}"}
        assert api.client.get("/v1/products", headers=headers).status_code == 200
    with sessions() as session:
        scheme = session.scalar(select(ApiKey.hash_scheme).where(ApiKey.prefix == created["prefix"]))
    assert scheme == "hmac-sha256"
    for api in _app_api(db_url, api_keys, key_pepper="pepper-2"):  # pepper changed: refused
        assert api.client.get("/v1/products", headers=headers).status_code == 401


# ---- rate limits ----------------------------------------------------------------------


def test_the_token_bucket_refills_at_its_rate():
    limiter = RateLimiter({"quotes": 10.0}, burst_seconds=0.5)
    assert [limiter.wait("k", "quotes", now=0.0) for _ in range(5)] == [0.0] * 5
    assert limiter.wait("k", "quotes", now=0.0) == pytest.approx(0.1)
    assert limiter.wait("other", "quotes", now=0.0) == 0.0  # per key
    assert limiter.wait("k", "quotes", now=0.1) == 0.0  # one token back after 1/rate
    assert limiter.wait("k", "outcomes", now=0.0) == 0.0  # no limit for that kind
    assert RateLimiter({"quotes": 0.0}, burst_seconds=1).wait("k", "quotes") == 0.0


def test_quotes_past_the_keys_limit_get_429_with_retry_after(catalog, db_url, api_keys):
    # 2 quotes in a burst, then one per 100 s: the third is refused however slow the machine.
    for api in _app_api(db_url, api_keys, rate_limit_quotes=0.01, rate_limit_burst_seconds=200):
        answers = [api.post("/v1/quotes", Role.CHECKOUT, json={**QUOTE, "customer_id": f"c-{i}"})
                   for i in range(3)]  # fmt: skip
        assert [r.status_code for r in answers] == [201, 201, 429]
        refused = answers[2]
        assert int(refused.headers["Retry-After"]) >= 1
        [problem] = refused.json()["detail"]
        assert problem["field"] == "authorization" and problem["type"] == "rate_limited"
        assert "0.01 quotes requests per second" in problem["msg"]
        # Nothing was done for the refused request: two quotes, two decisions.
        decisions = api.get("/v1/decisions", Role.ANALYST).json()["items"]
        assert len(decisions) == 2
        # Another key has its own bucket; the admin (who may quote) is not spent either.
        assert api.post("/v1/quotes", Role.ADMIN, json=QUOTE).status_code == 201


def test_outcomes_have_their_own_limit(catalog, db_url, api_keys):
    for api in _app_api(db_url, api_keys, rate_limit_outcomes=0.01, rate_limit_burst_seconds=100):
        line = api.post("/v1/quotes", Role.CHECKOUT, json=QUOTE).json()["lines"][0]
        outcome = {"decision_id": line["decision_id"], "converted": False}
        assert api.post("/v1/outcomes", Role.CHECKOUT, json=outcome).status_code == 201
        refused = api.post("/v1/outcomes/batch", Role.CHECKOUT, json={"outcomes": [outcome]})
        assert refused.status_code == 429
        assert api.post("/v1/quotes", Role.CHECKOUT, json=QUOTE).status_code == 201


def test_other_endpoints_are_not_rate_limited(limited_api, catalog):
    for _ in range(5):
        assert limited_api.get("/v1/products", Role.ANALYST).status_code == 200


# ---- body size ------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(catalog, db_url, api_keys, sessions):
    big = {**QUOTE, "context": {"note": "x" * 5000}}
    for api in _app_api(db_url, api_keys, max_body_bytes=2048):
        # The key is known to the worker first, so the quote fast path sees the big bodies
        # (and must hand them to the body limit).
        assert api.post("/v1/quotes", Role.CHECKOUT, json=QUOTE).status_code == 201
        declared = api.post("/v1/quotes", Role.CHECKOUT, json=big)
        assert declared.status_code == 413
        assert declared.json()["detail"][0]["field"] == "body"
        assert "2048 bytes" in declared.json()["detail"][0]["msg"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"customer_id": "c-1", "lines": [], "context": {"note": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}}'

        streamed = api.client.post(
            "/v1/quotes", content=chunks(),
            headers={**api.headers(Role.CHECKOUT), "Content-Type": "application/json"},
        )  # fmt: skip
        assert streamed.status_code == 413
        assert api.post("/v1/quotes", Role.CHECKOUT, json=QUOTE).status_code == 201
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 1  # then repeated


# ---- CORS -----------------------------------------------------------------------------


def test_cors_is_off_by_default(api):
    preflight = api.client.options("/v1/products", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
    })  # fmt: skip
    assert "access-control-allow-origin" not in preflight.headers
    plain = api.get("/v1/products", Role.ANALYST, headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_cors_allows_only_the_configured_origins(catalog, db_url, api_keys):
    for api in _app_api(db_url, api_keys, cors_origins="https://console.example"):
        ok = api.get("/v1/products", Role.ANALYST, headers={"Origin": "https://console.example"})
        assert ok.headers["access-control-allow-origin"] == "https://console.example"
        other = api.get("/v1/products", Role.ANALYST, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # A quote from a browser gets the CORS headers too (the quote fast path, which
        # answers plain quotes before any middleware, leaves cross-origin ones to CORS).
        assert api.post("/v1/quotes", Role.CHECKOUT, json=QUOTE).status_code == 201
        quote = api.post("/v1/quotes", Role.CHECKOUT, json={**QUOTE, "customer_id": "c-cors"},
                         headers={"Origin": "https://console.example"})  # fmt: skip
        assert quote.status_code == 201
        assert quote.headers["access-control-allow-origin"] == "https://console.example"


# ---- logs -----------------------------------------------------------------------------


def test_redaction_hides_customer_ids_and_keys():
    line = ('127.0.0.1:5 - "DELETE /v1/customers/jane.doe%40example.com HTTP/1.1" 200; '
            "GET /v1/decisions?limit=5&customer_id=jane-77 key pe_0123abcd_S3cretS3cretS3cret")  # fmt: skip
    out = redact(line)
    for secret in ("jane.doe", "jane-77", "S3cret"):
        assert secret not in out
    assert "/v1/customers/~" in out and "customer_id=~" in out and "pe_0123abcd_…" in out
    # The digest is stable: the same customer can be followed through the log.
    assert redact("/v1/customers/a") == redact("/v1/customers/a")
    assert redact("/v1/customers/a") != redact("/v1/customers/b")


def test_the_served_log_configuration_redacts_messages_and_tracebacks():
    config = log_config("info")
    formatter_path = config["formatters"]["engine"]["()"]
    module, name = formatter_path.rsplit(".", 1)
    formatter = getattr(__import__(module, fromlist=[name]), name)(
        fmt=config["formatters"]["engine"]["fmt"]
    )
    try:
        raise ValueError("insert failed for customer_id=alice-secret")
    except ValueError:
        import sys

        record = logging.LogRecord("pricing.writer", logging.ERROR, __file__, 1,
                                   "write failed for /v1/customers/%s", ("alice-secret",),
                                   sys.exc_info())  # fmt: skip
    assert "alice-secret" not in formatter.format(record)
    assert config["loggers"]["pricing"]["level"] == "INFO"


def test_a_real_server_logs_no_customer_id(db_url, tmp_path: Path, capsys):
    assert cli(["seed-demo", "--database-url", db_url, "--keys-file", str(tmp_path / "k.json")]) == 0
    capsys.readouterr()
    with (tmp_path / "k.json").open() as handle:
        import json

        keys = json.load(handle)
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    secret = "customer-7f3e-secret"
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as output, servers(db_url, 1, output=output,
                                                PRICING_LOG_LEVEL="info") as [(base, _)]:  # fmt: skip
        quote = {"customer_id": secret, "lines": [{"sku": "COF-001", "quantity": 1}]}
        checkout = {"Authorization": f"Bearer {keys['checkout']}"}
        assert httpx.post(f"{base}/v1/quotes", json=quote, headers=checkout).status_code == 201
        assert httpx.get(f"{base}/v1/decisions", params={"customer_id": secret},
                         headers=admin).status_code in (200, 422)  # fmt: skip
        assert httpx.delete(f"{base}/v1/customers/{secret}", headers=admin).status_code == 200
        assert httpx.get(f"{base}/v1/products", headers={
            "Authorization": f"Bearer {keys['analyst']}x"}).status_code == 401  # fmt: skip
    logged = log_file.read_text(errors="replace")
    assert "/v1/customers/~" in logged  # the access log is on, and redacted
    assert secret not in logged
    for key in keys.values():
        assert key not in logged


# ---- key rotation from the command line ---------------------------------------------------


def test_keys_are_listed_by_prefix_and_revoked_by_prefix(db_url, capsys, api, catalog):
    assert cli(["create-key", "--database-url", db_url, "--role", "checkout", "--name", "till-1"]) == 0
    captured = capsys.readouterr()
    key = captured.out.strip()
    prefix = key.split("_")[1]
    assert f"pe_{prefix}" in captured.err

    assert cli(["list-keys", "--database-url", db_url]) == 0
    listing = capsys.readouterr().out
    assert f"pe_{prefix}" in listing and "till-1" in listing
    assert key not in listing and key.split("_", 2)[2] not in listing

    headers = {"Authorization": f"Bearer {key}"}
    assert api.client.post("/v1/quotes", json=QUOTE, headers=headers).status_code == 201
    assert cli(["revoke-key", "--database-url", db_url, f"pe_{prefix}"]) == 0
    assert "revoked" in capsys.readouterr().out
    api.client.app.state.pricing.forget_keys()  # other workers: within the auth cache TTL
    assert api.client.post("/v1/quotes", json=QUOTE, headers=headers).status_code == 401
    assert cli(["revoke-key", "--database-url", db_url, "pe_00000000"]) == 1
    assert "no single key" in capsys.readouterr().err
