"""The ``pricing-engine`` command line (see :data:`DESCRIPTION` for what ``--help`` prints)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.db import engine_for, make_session_factory
from api.migrate import migration_state, upgrade
from api.orm import ApiKey
from api.schemas.catalog import SegmentIn
from api.security import Role
from api.services import catalog, keys
from api.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

DEMO_KEY_PREFIX = "demo-"

DESCRIPTION = """\
Dynamic pricing and promotion engine: serve quotes, learn from outcomes, manage the data.

commands:
  serve            run the HTTP service
  worker           run the background jobs: online posterior updates and refits
                   (PostgreSQL: a queue worker, any number of them; SQLite: in-process)
  migrate          migrate the database to the latest schema
  seed-demo        demo catalog, promotions, guardrails and API keys (kept between runs)
  create-key       create an API key and print it once
  list-keys        list the API keys by prefix, role and state (never the secrets)
  revoke-key       revoke an API key, named by its prefix (rotation: create, switch, revoke)
  refit            fit the demand model now; publish it if the diagnostics pass
  import-history   fit price elasticities to sales history (CSV) and use them as priors
  export-feedback  write the decision log as Open Bandit Pipeline feedback (NPZ + JSON)

Settings come from PRICING_* environment variables (README: configuration);
--database-url overrides PRICING_DATABASE_URL for any command.
Run 'pricing-engine COMMAND --help' for a command's options.
"""


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
    engine = engine_for(settings)
    installed = upgrade(engine)
    print(migration_state(engine).describe())
    if engine.dialect.name == "postgresql":
        print("job queue (procrastinate): " + ("installed" if installed else "present"))
    engine.dispose()
    return 0


def _defer(
    args: argparse.Namespace, task: str, *, queueing_lock: str | None = None, **kwargs: Any
) -> int:
    """Queue a job for the workers (PostgreSQL) and print its id."""
    settings = _settings(args)
    if not settings.database_url.startswith("postgresql"):
        print("error: --queue needs PostgreSQL; on SQLite run the command without it",
              file=sys.stderr)  # fmt: skip
        return 2
    from api.queue import defer

    job = defer(settings, task, queueing_lock=queueing_lock, **kwargs)
    if job is None:
        print(f"{task}: a job is already waiting; not queued again")
    else:
        print(f"{task}: queued as job {job}; a `pricing-engine worker` runs it")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service with uvicorn (refuses an unmigrated database)."""
    import uvicorn

    from api.protection import log_config

    settings = _settings(args)
    engine = engine_for(settings)
    state = migration_state(engine)
    engine.dispose()
    if not state.up_to_date:
        print(f"error: {state.describe()}", file=sys.stderr)
        return 2
    # Workers re-read settings from the environment: pass overrides through it.
    os.environ["PRICING_DATABASE_URL"] = settings.database_url
    # One updater for all API workers, in its own process (it alone imports PyMC).
    updater = None
    if args.updater or settings.run_updater:
        from api.updater import UpdaterProcess

        updater = UpdaterProcess(settings)
        updater.start()
    os.environ["PRICING_RUN_UPDATER"] = "false"
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=log_config(settings.log_level),
        )
    finally:
        if updater is not None:
            updater.stop()
    return 0


def _migrated_sessions(settings: Settings) -> Any:
    """A session factory on a migrated database, or None (the reason printed)."""
    engine = engine_for(settings)
    state = migration_state(engine)
    if not state.up_to_date:
        print(f"error: {state.describe()}", file=sys.stderr)
        engine.dispose()
        return None
    return make_session_factory(engine)


def cmd_create_key(args: argparse.Namespace) -> int:
    """Create an API key and print it (the only time it is shown)."""
    settings = _settings(args)
    sessions = _migrated_sessions(settings)
    if sessions is None:
        return 2
    with sessions() as session:
        created = keys.create_key(
            session, name=args.name or f"{args.role}-key", role=Role(args.role), actor=None,
            pepper=settings.pepper(),
        )  # fmt: skip
    print(created.key)
    print(f"prefix pe_{created.prefix} (how listings name it; revoke-key pe_{created.prefix})",
          file=sys.stderr)  # fmt: skip
    sessions.kw["bind"].dispose()
    return 0


def cmd_list_keys(args: argparse.Namespace) -> int:
    """List the API keys by public prefix (never a secret or a digest)."""
    sessions = _migrated_sessions(_settings(args))
    if sessions is None:
        return 2
    with sessions() as session:
        listed = keys.list_keys(session)
    print(f"{'prefix':<13} {'role':<13} {'created (UTC)':<17} {'revoked (UTC)':<17} name")
    for k in listed:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-"
        print(f"pe_{k.prefix:<10} {k.role:<13} {k.created_at:%Y-%m-%d %H:%M} "
              f"{revoked:<17} {k.name}")  # fmt: skip
    sessions.kw["bind"].dispose()
    return 0


def cmd_revoke_key(args: argparse.Namespace) -> int:
    """Revoke the key with the given prefix (it stops working within seconds everywhere)."""
    from api.errors import NotFound

    sessions = _migrated_sessions(_settings(args))
    if sessions is None:
        return 2
    try:
        with sessions() as session:
            key_id = keys.find_by_prefix(session, args.prefix).id
            session.rollback()
            revoked = keys.revoke_key(session, key_id=key_id, actor=None)
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        sessions.kw["bind"].dispose()
    print(f"revoked pe_{revoked.prefix} ({revoked.role}, {revoked.name}); workers refuse it "
          "within 10 seconds")  # fmt: skip
    return 0


def _demo_csv(name: str) -> str:
    return resources.files("api.demo").joinpath(name).read_text(encoding="utf-8")


def _seed_demo_promotions(sessions: Any) -> None:
    """Two demo promotions (created once): a paced coffee discount and free shipping."""
    from datetime import timedelta

    from api.orm import Promotion, utcnow
    from api.schemas.promotions import PromotionIn
    from api.services.promotions import put_promotion

    ends = (utcnow() + timedelta(days=30)).replace(microsecond=0).isoformat()
    demo = {
        "COFFEE10": {"name": "10% off coffee", "type": "percent_off", "percent_off": "10",
                     "currency": "USD", "budget": "250.00", "per_customer_limit": 1,
                     "eligibility": {"categories": ["coffee"], "ends_at": ends}},
        "FREESHIP": {"name": "Free shipping over $40", "type": "free_shipping",
                     "shipping_cost": "4.95", "currency": "USD", "exclusive": False,
                     "eligibility": {"min_cart_value": "40.00"}},
    }  # fmt: skip
    for key, body in demo.items():
        with sessions() as session:
            if session.get(Promotion, key) is not None:
                continue
            session.rollback()
            put_promotion(session, key=key, body=PromotionIn.model_validate(body), actor=None)


def cmd_export_feedback(args: argparse.Namespace) -> int:
    """Write the decision log as OBP bandit feedback: OUT/feedback.npz and OUT/feedback.json."""
    from pathlib import Path

    if args.queue:
        return _defer(args, "pricing.export_feedback", directory=str(Path(args.out).resolve()))
    from api.services.feedback import write_feedback

    written = write_feedback(_sessions(args), Path(args.out))
    print(f"{written['n_rounds']} rounds, {written['n_actions']} actions -> "
          f"{args.out}/feedback.npz, feedback.json")  # fmt: skip
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    """Migrate, load the demo catalog and segments, and print fresh demo keys."""
    settings = _settings(args)
    engine = engine_for(settings)
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
    _seed_demo_promotions(sessions)
    guardrails_note = _seed_demo_guardrails(sessions)
    simulated = None
    if args.simulate:
        from sqlalchemy import func

        from api.orm import Decision
        from api.simulate import simulate

        with sessions() as session:
            existing = session.scalar(select(func.count()).select_from(Decision)) or 0
        if existing:
            print(f"the database already holds {existing} decisions: not simulating more")
        else:
            # The half-way refit follows PRICING_FIT_METHOD / _DRAWS / _TUNE / _CHAINS, as
            # the updater's do (before, the demo always fitted the defaults).
            simulated = simulate(sessions, visitors=args.simulate, seed=args.seed,
                                 sampler_config=settings.sampler_config(),
                                 prior_at_list=settings.prior_at_list)
    keys_file = Path(args.keys_file) if args.keys_file else demo_keys_file(settings.database_url)
    issued, reused = _demo_keys(
        sessions, keys_file, rotate=args.rotate_keys, pepper=settings.pepper()
    )
    example = _personalized_customer(sessions)
    engine.dispose()
    host = settings.host
    port = settings.port
    print(
        f"demo catalog: {len(items)} products ({result.created} new, {result.updated} updated), "
        f"5 segments in {settings.database_url}"
    )
    if simulated is not None:
        print(
            f"simulated {simulated.visitors} visitors: {simulated.decisions} decisions, "
            f"{simulated.conversions} purchases; {simulated.refit}; experiment "
            f"{simulated.experiment!r} running (GET /v1/experiments/{simulated.experiment}/results)"
        )
    print(guardrails_note)
    state = "kept from the first run" if reused else "new"
    print(f"demo API keys ({state}; stored in {keys_file}, readable only by you; "
          "`pricing-engine seed-demo --rotate-keys` replaces them):")  # fmt: skip
    for role, key in issued.items():
        print(f"  {role.value:<13} {key}")
    print(f"\ntry a quote ({example} is in the engine's arm of the demo experiment, so the "
          "prices are the engine's, personalized where they differ from list; `reasons` says which arm decided):")  # fmt: skip
    print(
        f"  curl -s -X POST http://{host}:{port}/v1/quotes "
        f"-H 'Authorization: Bearer {issued[Role.CHECKOUT]}' -H 'Content-Type: application/json' "
        f'-d \'{{"customer_id": "{example}", "segment": "loyalty", '
        '"lines": [{"sku": "COF-001", "quantity": 1}, {"sku": "TEA-002", "quantity": 2}]}\''
    )
    print(f"  API docs: http://{host}:{port}/docs")
    return 0


def demo_keys_file(database_url: str) -> Path:
    """Where the demo keys are kept: next to a SQLite database file, else in the working
    directory (``.pricing-demo-keys.json``)."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url:
        db = Path(database_url.removeprefix(prefix))
        return db.with_name(db.name + ".demo-keys.json")
    return Path(".pricing-demo-keys.json")


def _demo_keys(
    sessions: Any, path: Path, *, rotate: bool, pepper: bytes | None
) -> tuple[dict[Role, str], bool]:
    """The demo keys in ``path`` if they are all still valid (and not ``rotate``); else
    revoke every demo key and issue new ones, written to ``path`` with mode 0600."""
    import json

    if path.exists() and not rotate:
        try:
            stored = {Role(role): key for role, key in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError):
            stored = {}
        with sessions() as session:
            valid = len(stored) == len(Role) and all(
                (who := keys.authenticate(session, key=key, pepper=pepper)) is not None
                and who.role == role
                for role, key in stored.items()
            )
        if valid:
            return stored, True
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
                session, name=f"{DEMO_KEY_PREFIX}{role.value}", role=role, actor=None,
                pepper=pepper,
            ).key
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({role.value: key for role, key in issued.items()}, handle, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return issued, False


#: The demo's guardrails: bounded discounts and increases, a margin floor, daily caps.
DEMO_GUARDRAILS = {
    "note": "demo guardrails (seed-demo)",
    "rules": [
        {"scope": "global", "max_discount": 0.3, "max_increase": 0.2, "min_margin": 0.1,
         "max_change": 0.25, "segment_gap": 1.3},
        {"scope": "category", "target": "coffee", "max_discount": 0.2},
    ],
}  # fmt: skip


def _seed_demo_guardrails(sessions: Any) -> str:
    """Store the demo guardrails unless some are already in effect; say which."""
    from api.schemas.guardrails import GuardrailSetIn
    from api.services.guardrails import active_version, put_guardrails

    with sessions() as session:
        current = active_version(session)
        session.rollback()
        if current is not None:
            return f"guardrails: version {current.id} in effect (kept)"
        stored = put_guardrails(session, body=GuardrailSetIn.model_validate(DEMO_GUARDRAILS), actor=None)
    rules = "; ".join(
        ", ".join(f"{k} {v}" for k, v in r.items()) for r in DEMO_GUARDRAILS["rules"]  # type: ignore[attr-defined]
    )
    return f"guardrails: version {stored.version} stored ({rules})"


def _personalized_customer(sessions: Any) -> str:
    """A customer id the running experiments put in a personalized (non-control) arm."""
    from api.db import read_only
    from api.services.experiments import ExperimentCache

    experiments = ExperimentCache(read_only(sessions))
    for n in range(42, 10_000):
        customer = f"c-{n}"
        assigned = experiments.for_unit(customer)
        if assigned is None or not (assigned.control or assigned.holdout):
            return customer
    return "c-42"


def _sessions(args: argparse.Namespace) -> Any:
    settings = _settings(args)
    engine = engine_for(settings)
    state = migration_state(engine)
    if not state.up_to_date:
        raise SettingsError(state.describe())
    return make_session_factory(engine)


def cmd_refit(args: argparse.Namespace) -> int:
    """Fit the demand model now, print diagnostics, publish if it passes the gate."""
    if args.queue:
        return _defer(args, "pricing.refit", force=True, queueing_lock="pricing.refit:requested",
                      **({"mode": "fanout"} if args.fanout else {}))  # fmt: skip
    from api.services.demand_models import refit
    from api.services.fanout import refit_fanout

    sessions = _sessions(args)
    sampler = {"method": args.method}
    for name in ("draws", "tune", "chains"):
        if getattr(args, name) is not None:
            sampler[name] = getattr(args, name)
    try:
        if args.fanout:
            result = refit_fanout(sessions, sampler_config=sampler,
                                  missing_outcome=_settings(args).missing_outcome,
                                  half_life_days=_settings(args).demand_half_life_days)  # fmt: skip
        else:
            result = refit(
                sessions, sampler_config=sampler, progressbar=not args.quiet,
                missing_outcome=_settings(args).missing_outcome,
                half_life_days=_settings(args).demand_half_life_days,
                prior_at_list=_settings(args).prior_at_list,
                change_detection=_settings(args).change_config(),
            )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = result.diagnostics
    rhat = "n/a (approximate)" if d["max_rhat"] is None else f"{d['max_rhat']:.4f}"
    print(f"model version {result.snapshot_id}: {'PUBLISHED' if result.published else 'REJECTED'}")
    print(
        f"  cells {result.n_cells}, trials {result.n_trials}, method {d['method']}, {d['seconds']:.1f} s"
    )
    print(
        f"  max R-hat {rhat}, min bulk ESS {d['min_ess_bulk']:.0f}, divergences {d['divergences']}"
    )
    if not result.published:
        print(f"  {result.message}; the previous snapshot keeps serving")
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the background jobs: online reweighting as outcomes arrive, refits when due.

    PostgreSQL: a procrastinate queue worker (any number, on any machines, share the
    jobs). SQLite: the same job functions in this process, on a timer.
    """
    settings = _settings(args)
    if settings.database_url.startswith("postgresql"):
        from api.queue import run_worker

        print(f"queue worker running ({settings.queue_concurrency} jobs at once); "
              "SIGTERM or Ctrl-C stops it after the running jobs", flush=True)  # fmt: skip
        try:
            run_worker(settings, name=args.name, wait=not args.once)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    from dataclasses import fields

    from api.jobs import JobRuntime
    from api.updater import Updater

    # The queue's workers and this loop run the same jobs with the same settings.
    runtime = JobRuntime.from_settings(settings, _sessions(args))
    updater = Updater(**{f.name: getattr(runtime, f.name) for f in fields(JobRuntime)},
                      interval=settings.updater_interval_seconds)  # fmt: skip
    if args.once:
        update, fit = updater.step()
        print(
            f"applied {update.applied} outcomes to snapshot {update.snapshot_id}; ESS {update.ess}"
        )
        if fit is not None:
            print(
                f"refit: version {fit.snapshot_id} {'published' if fit.published else fit.message}"
            )
        return 0
    print("updater running; Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: updater.stop_soon())
    with contextlib.suppress(KeyboardInterrupt):
        updater.run_forever()
    return 0


def cmd_import_history(args: argparse.Namespace) -> int:
    """Fit elasticities to a sales-history CSV and store them as the conversion model's prior."""
    from pathlib import Path

    from api.services.history_import import HistoryError, import_history

    if args.queue:
        return _defer(args, "pricing.import_history", path=str(Path(args.file).resolve()),
                      elasticity=args.elasticity, dry_run=args.dry_run)  # fmt: skip
    sessions = _sessions(args)
    try:
        result = import_history(
            sessions, Path(args.file), elasticity=args.elasticity, progressbar=not args.quiet,
            dry_run=args.dry_run,
        )  # fmt: skip
    except HistoryError as exc:
        print(f"error: {args.file} was not imported:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fit = result.fit
    e = fit.elasticity
    label = "elasticity (pooled)" if fit.kind == "pooled" else "mean elasticity across segments"
    print(f"rows used: {fit.rows} ({fit.units} segment x sku units, {fit.periods} periods)")
    print(f"{label}: {e['mean']:.3f}  90% interval [{e['lower']:.3f}, {e['upper']:.3f}]")
    print(f"two-way fixed-effects OLS slope: {fit.ols:.3f}")
    for segment, s in fit.by_segment.items():
        print(f"  {segment:<20} {s['mean']:.3f}  90% [{s['lower']:.3f}, {s['upper']:.3f}]")
    d = fit.diagnostics
    print(f"diagnostics: max R-hat {d['max_rhat']:.4f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
          f"divergences {d['divergences']}, {d['seconds']:.1f} s")  # fmt: skip
    if d["max_rhat"] > 1.01 or d["min_ess_bulk"] < 400 or d["divergences"] > 0:
        print("warning: diagnostics below the publication thresholds; treat the summary with care")
    print(result.note)
    return 0


_QUEUE_HELP = "queue it as a job for the workers instead (PostgreSQL; paths must be visible to them)"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="pricing-engine", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--database-url", help="overrides PRICING_DATABASE_URL")
        return p

    serve = add("serve", "run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument(
        "--updater", action="store_true", help="also run the updater in this process"
    )
    serve.set_defaults(func=cmd_serve)
    add("migrate", "migrate the database to the latest schema").set_defaults(func=cmd_migrate)
    seed = add("seed-demo", "load the demo catalog and print demo API keys")
    seed.add_argument("--host", help="host shown in the curl example")
    seed.add_argument("--port", type=int, help="port shown in the curl example")
    seed.add_argument(
        "--simulate", type=int, default=0, metavar="N",
        help="run N simulated visitors through the engine (experiment, promotions, a refit)",
    )  # fmt: skip
    seed.add_argument("--seed", type=int, default=7, help="simulation seed")
    seed.add_argument(
        "--keys-file", metavar="PATH",
        help="where the demo keys are kept (default: next to the SQLite database)",
    )  # fmt: skip
    seed.add_argument(
        "--rotate-keys", action="store_true", help="revoke the demo keys and issue new ones"
    )
    seed.set_defaults(func=cmd_seed_demo)
    key = add("create-key", "create an API key and print it once")
    key.add_argument("--role", required=True, choices=[r.value for r in Role])
    key.add_argument("--name")
    key.set_defaults(func=cmd_create_key)
    add("list-keys", "list the API keys by prefix, role and state").set_defaults(
        func=cmd_list_keys
    )
    revoke = add("revoke-key", "revoke an API key, named by its prefix")
    revoke.add_argument("prefix", help="the key's prefix as listed, e.g. pe_3e4f5a6b")
    revoke.set_defaults(func=cmd_revoke_key)
    refit_p = add("refit", "fit the demand model now and publish it if diagnostics pass")
    refit_p.add_argument("--method", default="auto", choices=["auto", "nuts", "nutpie", "advi"])
    refit_p.add_argument("--draws", type=int)
    refit_p.add_argument("--tune", type=int)
    refit_p.add_argument("--chains", type=int)
    refit_p.add_argument("--quiet", action="store_true", help="no progress bar")
    refit_p.add_argument("--queue", action="store_true", help=_QUEUE_HELP)
    refit_p.add_argument(
        "--fanout", action="store_true",
        help="one fit per category, the shared parameters held at the last full fit's",
    )  # fmt: skip
    refit_p.set_defaults(func=cmd_refit)
    worker = add("worker", "run the background jobs (online posterior updates, refits)")
    worker.add_argument(
        "--once", action="store_true", help="run what is due, then exit (PostgreSQL: until idle)"
    )
    worker.add_argument("--name", help="worker name in the queue's logs (PostgreSQL)")
    worker.set_defaults(func=cmd_worker)
    history = add(
        "import-history", "fit price elasticities to sales history (CSV) and use them as priors"
    )
    history.add_argument("file", help="CSV with columns segment, sku, period, price, units")
    history.add_argument("--elasticity", choices=["pooled", "hierarchical"], default="pooled")
    history.add_argument("--dry-run", action="store_true", help="fit and print, store nothing")
    history.add_argument("--quiet", action="store_true", help="no progress bar")
    history.add_argument("--queue", action="store_true", help=_QUEUE_HELP)
    history.set_defaults(func=cmd_import_history)
    export = add("export-feedback", "write the decision log as OBP bandit feedback (NPZ + JSON)")
    export.add_argument("out", help="output directory")
    export.add_argument("--queue", action="store_true", help=_QUEUE_HELP)
    export.set_defaults(func=cmd_export_feedback)
    return parser


def _quiet_library_warnings() -> None:
    """Hide library warnings a user of the CLI cannot act on (README: performance notes).

    PyTensor's "could not link to a BLAS installation": the models here are small and
    elementwise, and the README says what to install for BLAS; ArviZ's FutureWarnings
    about its own coming refactor.
    """
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"arviz(\.|$)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pricing-engine`` console script."""
    _quiet_library_warnings()
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
