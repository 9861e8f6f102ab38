import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from api.app import NotMigratedError, create_app
from api.db import make_engine
from api.migrate import include_object, migration_state, upgrade
from api.orm import Base
from api.settings import load_settings


def test_the_models_match_the_migrations(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_object}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_migrated_database_is_current(engine):
    state = migration_state(engine)
    assert state.up_to_date and state.current == state.head


def test_the_app_refuses_an_unmigrated_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    app = create_app(load_settings(database_url=url))
    with pytest.raises(NotMigratedError, match="pricing-engine migrate"), TestClient(app):
        pass


def test_downgrade_and_upgrade_round_trip(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    upgrade(engine)
    upgrade_head = migration_state(engine).head
    from alembic import command

    from api.migrate import alembic_config

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert migration_state(engine).current is None
    upgrade(engine)
    assert migration_state(engine).current == upgrade_head


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_new_sqlite_database_takes_the_configured_page_size_and_an_old_one_keeps_its_own(
    tmp_path, monkeypatch
):
    """``PRICING_SQLITE_PAGE_SIZE`` reaches the database that ``pricing-engine migrate``
    creates, and the service and its writer process open it as it is."""
    from api.cli import main as cli

    page_size = "PRAGMA page_size"
    monkeypatch.setenv("PRICING_SQLITE_PAGE_SIZE", "1024")
    small = f"sqlite:///{tmp_path / 'small.db'}"
    assert cli(["migrate", "--database-url", small]) == 0
    with make_engine(small).connect() as connection:  # any engine: the file says
        assert connection.exec_driver_sql(page_size).scalar() == 1024
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    app = create_app(load_settings(database_url=small))
    with app.state.pricing.engine.connect() as connection:
        assert connection.exec_driver_sql(page_size).scalar() == 1024
    # A database made before keeps its pages; unset, SQLite's default.
    monkeypatch.delenv("PRICING_SQLITE_PAGE_SIZE")
    default = f"sqlite:///{tmp_path / 'default.db'}"
    assert cli(["migrate", "--database-url", default]) == 0
    with make_engine(default, sqlite_page_size=2048).connect() as connection:
        assert connection.exec_driver_sql(page_size).scalar() == 4096


def test_the_service_syncs_sqlite_fully_by_default(tmp_path, monkeypatch):
    """FULL: a commit, hence every acknowledged response, survives a power loss too."""
    monkeypatch.delenv("PRICING_SQLITE_SYNCHRONOUS", raising=False)
    url = f"sqlite:///{tmp_path / 'full.db'}"
    upgrade(make_engine(url))
    app = create_app(load_settings(database_url=url))
    with app.state.pricing.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    normal = make_engine(url, sqlite_synchronous="NORMAL")
    with normal.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
