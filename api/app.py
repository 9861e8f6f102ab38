"""The FastAPI application.

Examples
--------
>>> from api.app import create_app                    # doctest: +SKIP
>>> app = create_app()          # reads PRICING_* settings; refuses an unmigrated database
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from api.db import make_engine, make_session_factory, read_only
from api.deps import AppState
from api.errors import install_error_handlers
from api.metrics import Metrics, install_metrics
from api.migrate import migration_state
from api.posterior_cache import PosteriorCache
from api.routes import admin, catalog, health, logs, models, quotes
from api.routes import experiments as experiment_routes
from api.routes import guardrails as guardrail_routes
from api.routes import promotions as promotion_routes
from api.services.context import ContextSchemaCache
from api.services.experiments import ExperimentCache
from api.services.guardrails import GuardrailCache, rules_for_version
from api.settings import Settings, get_settings
from api.updater import Updater
from pricing import __version__
from pricing.policy import ListPricePolicy, PricePolicy, ThompsonPricePolicy
from pricing.posterior import DemandPosterior

__all__ = ["NotMigratedError", "create_app"]

log = logging.getLogger("pricing.api")

DESCRIPTION = """
Personalized prices and promotions for each checkout line, chosen by Thompson sampling
on Bayesian demand models inside merchandiser guardrails. Every decision is logged with
its exact propensity before it is returned.

Authenticate with `Authorization: Bearer <key>`. Money is a decimal string with an
explicit currency; timestamps are ISO 8601 in UTC.
"""


class NotMigratedError(RuntimeError):
    """The database is not at the migration revision this code expects."""


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
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        write_wait_seconds=settings.db_write_wait_seconds,
    )
    sessions = make_session_factory(engine)
    posterior = PosteriorCache(read_only(sessions), poll_seconds=settings.snapshot_poll_seconds)
    guardrails = GuardrailCache(read_only(sessions))

    def serving() -> tuple[str, DemandPosterior] | None:
        served = posterior.served
        return (str(served.snapshot_id), served.posterior) if served is not None else None

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
            n_prices=settings.price_ladder_size,
        )  # fmt: skip

    if policy is None and settings.policy == "thompson":
        policy = ThompsonPricePolicy(
            serving, lambda: guardrails.get()[1],
            epsilon=settings.exploration_epsilon, n_prices=settings.price_ladder_size,
        )  # fmt: skip
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        read_sessions=read_only(sessions),
        policy=policy or ListPricePolicy(),
        posterior=posterior,
        guardrails=guardrails,
        context_schema=ContextSchemaCache(read_only(sessions)),
        experiments=ExperimentCache(read_only(sessions)),
        policy_factory=variant_policy,
        metrics=Metrics(),
    )
    updater = (
        Updater(
            sessions,
            interval=settings.updater_interval_seconds,
            ess_fraction=settings.refit_ess_fraction,
            refit_every=timedelta(seconds=settings.refit_every_seconds),
            sampler_config={"method": settings.fit_method},
            missing_outcome=settings.missing_outcome,
        )
        if settings.run_updater
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrations = migration_state(engine)
        if not migrations.up_to_date:
            engine.dispose()
            raise NotMigratedError(migrations.describe())
        log.info("serving with %s", migrations.describe())
        # Load the quote path's caches before the first request (later refreshes never block).
        state.guardrails.get()
        state.context_schema.get()
        state.experiments.get()
        state.posterior.start()
        if updater is not None:
            updater.start()
        try:
            yield
        finally:
            if updater is not None:
                updater.stop()
            state.posterior.stop()
            engine.dispose()

    app = FastAPI(
        title="Pricing engine",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.pricing = state
    install_error_handlers(app)
    install_metrics(app, state.metrics)
    for module in (
        quotes,
        catalog,
        guardrail_routes,
        experiment_routes,
        promotion_routes,
        logs,
        models,
        admin,
        health,
    ):
        app.include_router(module.router)
    return app
