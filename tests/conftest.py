"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``PRICING_TEST_POSTGRES_URL`` (default: the local server's ``test``
database); the tests create a throw-away database of their own next to it. When no server
answers, the PostgreSQL half skips with the reason, unless ``PRICING_REQUIRE_POSTGRES=1``
(set by ``.ci/run``), in which case it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, make_url, text

from api.app import create_app
from api.db import make_engine, make_session_factory
from api.migrate import upgrade
from api.orm import Base
from api.security import Role
from api.services.keys import create_key
from api.settings import load_settings

# CI explores the same examples every run (a red CI blocks a submission); developers'
# runs keep drawing new ones, which is how the property tests find new edge cases.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Tests run SQLite with synchronous=NORMAL (durable against process kills, which is what
# the crash tests check); the service's default FULL (power loss too) costs an fsync per
# commit, which only slows the suite. test_migrations checks the default is FULL.
os.environ.setdefault("PRICING_SQLITE_SYNCHRONOUS", "NORMAL")
# The app's writer commits on its thread in tests: a writer process per app (the served
# default) would spawn an interpreter for each of the suite's hundreds of apps. The tests
# that are about the writer process, and the served-process tests (kill -9, the systems
# benchmark), turn it on themselves.
os.environ.setdefault("PRICING_WRITER_PROCESS", "0")

POSTGRES_URL = os.environ.get(
    "PRICING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("PRICING_REQUIRE_POSTGRES") == "1"


def _postgres_admin_engine() -> Engine:
    return make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")


def _create_postgres_database() -> tuple[str, Callable[[], None]]:
    admin = _postgres_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{message}; PRICING_REQUIRE_POSTGRES=1 makes it mandatory")
        pytest.skip(f"{message}; set PRICING_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = f"pricing_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A freshly migrated database of each backend, shared by the session's tests."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "pricing.db"
        url, drop = f"sqlite:///{path}", (lambda: None)
    else:
        url, drop = _create_postgres_database()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop()


@pytest.fixture
def db_url(migrated_url: str) -> Iterator[str]:
    """The migrated database, emptied before each test."""
    engine = make_engine(migrated_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    yield migrated_url


@pytest.fixture
def backend(db_url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Any:
    """Session factory on the test database."""
    return make_session_factory(engine)


@pytest.fixture
def api_keys(sessions: Any) -> dict[Role, str]:
    """One key per role."""
    out = {}
    for role in Role:
        with sessions() as session:
            out[role] = create_key(session, name=f"test-{role.value}", role=role, actor=None).key
    return out


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """A test client of an app on the test database."""
    app = create_app(load_settings(database_url=db_url))
    with TestClient(app) as test_client:
        yield test_client


class Api:
    """A test client that knows the keys of every role."""

    def __init__(self, client: TestClient, keys: dict[Role, str]) -> None:
        self.client = client
        self.keys = keys

    def headers(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}

    def request(self, method: str, url: str, role: Role | None = Role.ADMIN, **kwargs: Any) -> Any:
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.request("GET", url, role, **kw)

    def post(self, url: str, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.request("POST", url, role, **kw)

    def put(self, url: str, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.request("PUT", url, role, **kw)

    def delete(self, url: str, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.request("DELETE", url, role, **kw)

    # ---- helpers that set up a small catalog
    def product(
        self, sku: str, list_price: str = "10.00", unit_cost: str = "4.00", **extra: Any
    ) -> Any:
        body = {"name": sku.lower(), "category": "tea", "list_price": list_price,
                "unit_cost": unit_cost, "currency": "USD", **extra}  # fmt: skip
        response = self.put(f"/v1/products/{sku}", Role.MERCHANDISER, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def segment(self, key: str = "default", **extra: Any) -> Any:
        response = self.put(f"/v1/segments/{key}", Role.MERCHANDISER, json={"name": key, **extra})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def quote(self, *skus: str, customer: str = "c-1", **extra: Any) -> Any:
        body = {
            "customer_id": customer,
            "lines": [{"sku": s, "quantity": 1} for s in skus],
            **extra,
        }
        response = self.post("/v1/quotes", Role.CHECKOUT, json=body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def api(client: TestClient, api_keys: dict[Role, str]) -> Api:
    """Authenticated helper around the test client."""
    return Api(client, api_keys)


@pytest.fixture
def catalog(api: Api) -> Api:
    """The API with a default segment and two products (TEA-1 at 10.00, TEA-2 at 4.99)."""
    api.segment("default")
    api.segment("loyalty")
    api.product("TEA-1", "10.00", "4.00")
    api.product("TEA-2", "4.99", "2.50")
    return api


@pytest.fixture
def tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
