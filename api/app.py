"""The FastAPI application.

Examples
--------
>>> from api.app import create_app                    # doctest: +SKIP
>>> app = create_app()          # reads PRICING_* settings; refuses an unmigrated database
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from api import console
from api.db import WalCheckpointer, engine_for, make_session_factory, read_only
from api.deps import AppState
from api.error_handlers import install_error_handlers
from api.fast_path import QuoteFastPath
from api.hot.maintenance import WriterTask
from api.hot.offer_book import sweep_due, sweep_in
from api.hot.refresher import Every, OutcomeFeed, Refresher
from api.metrics import Metrics, install_metrics
from api.migrate import migration_state
from api.posterior_cache import PosteriorCache
from api.protection import RateLimiter, install_protection
from api.routes import admin, audits, catalog, demand_models, health, jurisdictions, logs, quotes
from api.routes import experiments as experiment_routes
from api.routes import guardrails as guardrail_routes
from api.routes import promotions as promotion_routes
from api.services.context import ContextSchemaCache
from api.services.erasure import ErasureFeed, notices_due, purge_notices_in
from api.services.experiments import ExperimentCache
from api.services.guardrails import GuardrailCache, rules_for_version
from api.services.idempotency import IdempotencyStore, purge_due, purge_expired_in
from api.services.jurisdictions import JurisdictionCache
from api.services.quotes import QuoteService
from api.settings import Settings, get_settings
from api.updater import UpdaterProcess
from pricing import __version__
from pricing.choices import shutdown_solver_process
from pricing.policy import ListPricePolicy, PricePolicy, ThompsonPricePolicy
from pricing.posterior import DemandPosterior
from pricing.safe_start import JointSafetyBudget

__all__ = ["NotMigratedError", "create_app"]

log = logging.getLogger("pricing.api")

DESCRIPTION = """
Personalized prices and promotions for each checkout line, chosen by Thompson sampling
on Bayesian demand models inside merchandiser guardrails. Every decision is logged with
its exact propensity before it is returned.

Authenticate with `Authorization: Bearer <key>`. Money is a decimal string with an
explicit currency; timestamps are ISO 8601 in UTC.
"""


#: The console's stylesheet and script (served by the app: no CDN, works offline).
CONSOLE_STATIC = Path(__file__).parent / "console" / "static"

#: Every operation may answer 413 (the body limit, before routing): documented on all.
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"description": "The body is larger than PRICING_MAX_BODY_BYTES; nothing was done."}
}


class NotMigratedError(RuntimeError):
    """The database is not at the migration revision this code expects."""


class _PricingApp(FastAPI):
    """FastAPI with :class:`~api.fast_path.QuoteFastPath` around its middleware stack."""

    fast_path_options: dict[str, Any] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack, wrapped by the quote fast path (when configured)."""
        stack = super().build_middleware_stack()
        if self.fast_path_options is None:
            return stack
        return QuoteFastPath(stack, **self.fast_path_options)


def create_app(settings: Settings | None = None, *, policy: PricePolicy | None = None) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to the ``PRICING_*`` environment.
    policy : PricePolicy, optional
        Decides quote prices; by default Thompson sampling inside the active guardrails
        (``PRICING_POLICY=list`` serves list prices).

    Returns
    -------
    FastAPI
        The app. Start-up fails with :class:`NotMigratedError` unless the database is
        at the latest migration.
    """
    settings = settings or get_settings()
    checkpointer = None
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and settings.sqlite_checkpoint_seconds > 0:  # fmt: skip
        limit = settings.sqlite_wal_limit_mb
        checkpointer = WalCheckpointer(str(url.database), settings.sqlite_checkpoint_seconds,
                                       int(limit * 1e6) if limit > 0 else None)  # fmt: skip
    engine = engine_for(
        settings,
        pool_size=settings.db_pool_size,
        write_wait_seconds=settings.db_write_wait_seconds,
        sqlite_synchronous=settings.sqlite_synchronous,
        connect_timeout_seconds=settings.db_connect_timeout_seconds,
        sqlite_autocheckpoint=checkpointer is None,
    )
    sessions = make_session_factory(engine)
    reader = read_only(sessions)
    posterior = PosteriorCache(reader, poll_seconds=settings.snapshot_poll_seconds)
    guardrails = GuardrailCache(reader)
    context_schema = ContextSchemaCache(reader)
    jurisdiction_rules = JurisdictionCache(reader)
    experiments = ExperimentCache(reader)
    quote_service = QuoteService.build(
        sessions, guardrails=guardrails, context_schema=context_schema,
        default_segment=settings.default_segment,
        ttl=timedelta(seconds=settings.quote_ttl_seconds),
        outcome_window=timedelta(seconds=settings.outcome_window_seconds),
        lease_seconds=settings.promotion_lease_seconds, max_rows=settings.writer_max_rows,
        jurisdictions=jurisdiction_rules, write_timeout=settings.write_timeout_seconds,
        linger=settings.writer_linger_seconds, calendar_zone=settings.calendar_zone(),
        writer_process=settings.writer_process,
    )  # fmt: skip
    hot_catalog, prices, promotions = (
        quote_service.catalog, quote_service.prices, quote_service.promotions
    )  # fmt: skip
    sticky, writer = quote_service.sticky, quote_service.writer

    def serving() -> tuple[str, DemandPosterior] | None:
        served = posterior.served
        return (str(served.snapshot_id), served.posterior) if served is not None else None

    # One budget of allowed loss per worker, shared by the engine's policies (variants too).
    safety = (JointSafetyBudget(settings.max_loss_vs_list, settings.safe_start_confidence,
                                background=True)
              if settings.max_loss_vs_list is not None else None)  # fmt: skip

    def variant_policy(guardrail_version: int | None, epsilon: float | None) -> PricePolicy:
        """The engine with an experiment variant's guardrail version and exploration floor."""
        rules = None
        if guardrail_version is not None:
            with read_only(sessions)() as session:
                rules = rules_for_version(session, guardrail_version)
        fixed = rules
        return ThompsonPricePolicy(
            serving, (lambda: fixed) if fixed is not None else (lambda: guardrails.get()[1]),
            epsilon=settings.exploration_epsilon if epsilon is None else epsilon,
            floor=settings.min_propensity, safety=safety,
            n_prices=settings.price_ladder_size, pacing_process=settings.pacing_process,
        )  # fmt: skip

    if policy is None and settings.policy == "thompson":
        policy = ThompsonPricePolicy(
            serving, lambda: guardrails.get()[1],
            epsilon=settings.exploration_epsilon, floor=settings.min_propensity,
            n_prices=settings.price_ladder_size, safety=safety,
            pacing_process=settings.pacing_process,
        )  # fmt: skip
    idempotency = IdempotencyStore(
        reader.kw["bind"], ttl=timedelta(seconds=settings.idempotency_ttl_seconds)
    )

    def forget_customers(hashes: set[str]) -> None:
        """Erased customers: drop what this worker holds of them in memory."""
        sticky.forget(hashes)
        promotions.forget_customers(hashes)
        idempotency.forget(hashes)

    state = AppState(
        safety=safety,
        settings=settings,
        engine=engine,
        sessions=sessions,
        read_sessions=reader,
        policy=policy or ListPricePolicy(),
        posterior=posterior,
        guardrails=guardrails,
        context_schema=context_schema,
        jurisdictions=jurisdiction_rules,
        experiments=experiments,
        catalog=hot_catalog,
        prices=prices,
        promotions=promotions,
        sticky=sticky,
        writer=writer,
        quotes=quote_service,
        idempotency=idempotency,
        policy_factory=variant_policy,
        metrics=Metrics(),
        forget_customers=forget_customers,
        limiter=RateLimiter(
            {"quotes": settings.rate_limit_quotes, "outcomes": settings.rate_limit_outcomes},
            burst_seconds=settings.rate_limit_burst_seconds,
        ),
    )
    # The updater runs in its own process (a refit loads PyMC and takes the CPU for
    # minutes): this process never imports PyMC.
    updater: UpdaterProcess | None = (
        UpdaterProcess(settings) if settings.run_updater else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrations = migration_state(engine)
        if not migrations.up_to_date:
            engine.dispose()
            raise NotMigratedError(migrations.describe())
        log.info("serving with %s", migrations.describe())
        # Load the quote path's state before the first request; from then on the refresher
        # thread keeps it fresh and requests never read it from the database.
        for cache in (guardrails, context_schema, experiments, jurisdiction_rules):
            cache.get()
            cache.background = True
        if settings.writer_on_loop:
            quote_service.writer.bind(asyncio.get_running_loop())
        quote_service.warm()
        # From now on leases are granted and returned in the writer's transactions (the
        # first ones, just taken by warm(), in transactions of their own).
        writer = quote_service.promotions.writer = quote_service.writer
        refresher = Refresher(
            {
                "guardrails": guardrails.refresh,
                "context_schema": context_schema.refresh,
                "jurisdictions": jurisdiction_rules.refresh,
                "experiments": experiments.refresh,
                "catalog": hot_catalog.refresh,
                "prices": prices.refresh,
                "promotions": promotions.refresh,
                "outcomes": OutcomeFeed(reader, sticky.mark_reported),
                # Background writes go through the worker's group writer, and only when
                # a read says there is something to do (api/hot/maintenance.py).
                "sweep": Every(settings.sweep_seconds, WriterTask(writer, reader, sweep_due, sweep_in)),
                "idempotency": WriterTask(writer, reader, purge_due, purge_expired_in, 1000),
                "erasures": ErasureFeed(reader, forget_customers),
                "erasure_notices": Every(3600.0, WriterTask(writer, reader, notices_due, purge_notices_in)),
            },
            interval=settings.refresh_seconds,
        )
        state.refresher = refresher
        refresher.start()
        if checkpointer is not None:
            checkpointer.start()
        state.posterior.start()
        # Everything loaded so far (the libraries, the catalog, the posterior) lives as long
        # as the worker: take it out of the cyclic collector's reach, so that a full
        # collection scans only what requests allocate (it otherwise walks every object
        # of PyMC and friends: pauses of 50-150 ms, measured, straight into quote p99).
        gc.collect()
        gc.freeze()
        young_collections = gc.get_threshold()
        try:
            state.metrics.watch_gc()
            state.metrics.watch_writer(quote_service.writer)
            gc.set_threshold(settings.gc_young_threshold, *young_collections[1:])
            sys.setswitchinterval(settings.gil_switch_seconds)
            if updater is not None:
                updater.start()
            yield
        finally:
            if updater is not None:
                updater.stop()
            state.metrics.unwatch_gc()
            gc.set_threshold(*young_collections)
            # Off the loop: the refresher may be waiting for a write the loop carries.
            await asyncio.get_running_loop().run_in_executor(None, refresher.stop)
            state.posterior.stop()
            await quote_service.aclose()
            if safety is not None:
                safety.close()
            if checkpointer is not None:
                checkpointer.stop()
            shutdown_solver_process()
            engine.dispose()

    app = _PricingApp(
        title="Pricing engine",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Off unless asked for: FastAPI would otherwise look for OpenTelemetry providers on
        # every request (PRICING_OPENTELEMETRY).
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.pricing = state
    app.mount("/console/static", StaticFiles(directory=str(CONSOLE_STATIC)), name="console-static")
    app.include_router(console.router)
    install_error_handlers(app)
    # Outermost: plain quotes skip every middleware (the fast path does their part).
    app.fast_path_options = {"max_body_bytes": settings.max_body_bytes,
                             "cors": bool(settings.cors_allowed())}  # fmt: skip
    install_protection(app, settings)
    install_metrics(app, state.metrics)
    for module in (
        quotes,
        catalog,
        guardrail_routes,
        jurisdictions,
        experiment_routes,
        promotion_routes,
        logs,
        audits,
        demand_models,
        admin,
        health,
    ):
        app.include_router(module.router, responses=TOO_LARGE)
    return app
