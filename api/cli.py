"""``pricing-engine``: serve, migrate, seed-demo, create-key."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from importlib import resources

from sqlalchemy import select

from api.db import make_engine, make_session_factory
from api.migrate import migration_state, upgrade
from api.orm import ApiKey
from api.schemas import SegmentIn
from api.security import Role
from api.services import catalog, keys
from api.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

DEMO_KEY_PREFIX = "demo-"


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    for name in ("host", "port", "workers"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    return load_settings(**overrides)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database to the latest migration."""
    settings = _settings(args)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    print(migration_state(engine).describe())
    engine.dispose()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service with uvicorn (refuses an unmigrated database)."""
    import uvicorn

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    state = migration_state(engine)
    engine.dispose()
    if not state.up_to_date:
        print(f"error: {state.describe()}", file=sys.stderr)
        return 2
    # Workers re-read settings from the environment: pass overrides through it.
    os.environ["PRICING_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
    )
    return 0


def cmd_create_key(args: argparse.Namespace) -> int:
    """Create an API key and print it (the only time it is shown)."""
    settings = _settings(args)
    engine = make_engine(settings.database_url)
    if not migration_state(engine).up_to_date:
        print(f"error: {migration_state(engine).describe()}", file=sys.stderr)
        return 2
    with make_session_factory(engine)() as session:
        created = keys.create_key(
            session, name=args.name or f"{args.role}-key", role=Role(args.role), actor=None
        )
    print(created.key)
    engine.dispose()
    return 0


def _demo_csv(name: str) -> str:
    return resources.files("api.demo").joinpath(name).read_text(encoding="utf-8")


def cmd_seed_demo(args: argparse.Namespace) -> int:
    """Migrate, load the demo catalog and segments, and print fresh demo keys."""
    settings = _settings(args)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        for row in csv.DictReader(_demo_csv("segments.csv").splitlines()):
            catalog.put_segment(
                session,
                key=row["key"],
                data=SegmentIn(name=row["name"], description=row["description"]),
                actor=None,
            )
    with sessions() as session:
        items = catalog.parse_product_csv(_demo_csv("catalog.csv"), max_rows=10_000)
        result = catalog.import_products(session, items=items, actor=None)
    # Demo keys are re-issued on every seed (secrets cannot be shown twice): revoke old ones.
    with sessions() as session:
        old = session.scalars(
            select(ApiKey.id).where(
                ApiKey.name.startswith(DEMO_KEY_PREFIX), ApiKey.revoked_at.is_(None)
            )
        ).all()
        session.rollback()
        for key_id in old:
            keys.revoke_key(session, key_id=key_id, actor=None)
    issued = {}
    with sessions() as session:
        for role in Role:
            issued[role] = keys.create_key(
                session, name=f"{DEMO_KEY_PREFIX}{role.value}", role=role, actor=None
            ).key
    engine.dispose()
    host = settings.host
    port = settings.port
    print(
        f"demo catalog: {len(items)} products ({result.created} new, {result.updated} updated), "
        f"5 segments in {settings.database_url}"
    )
    print("demo API keys (shown once; re-run seed-demo for new ones):")
    for role, key in issued.items():
        print(f"  {role.value:<13} {key}")
    print("\ntry a quote:")
    print(
        f"  curl -s -X POST http://{host}:{port}/v1/quotes "
        f"-H 'Authorization: Bearer {issued[Role.CHECKOUT]}' -H 'Content-Type: application/json' "
        '-d \'{"customer_id": "c-42", "segment": "loyalty", '
        '"lines": [{"sku": "COF-001", "quantity": 1}, {"sku": "TEA-002", "quantity": 2}]}\''
    )
    print(f"  API docs: http://{host}:{port}/docs")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="pricing-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--database-url", help="overrides PRICING_DATABASE_URL")
        return p

    serve = add("serve", "run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)
    add("migrate", "migrate the database to the latest schema").set_defaults(func=cmd_migrate)
    seed = add("seed-demo", "load the demo catalog and print demo API keys")
    seed.add_argument("--host", help="host shown in the curl example")
    seed.add_argument("--port", type=int, help="port shown in the curl example")
    seed.set_defaults(func=cmd_seed_demo)
    key = add("create-key", "create an API key and print it once")
    key.add_argument("--role", required=True, choices=[r.value for r in Role])
    key.add_argument("--name")
    key.set_defaults(func=cmd_create_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pricing-engine`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
