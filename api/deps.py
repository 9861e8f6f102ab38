"""Request dependencies: the app's state, a database session, and role checks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.errors import Forbidden, Unauthenticated, Unavailable
from api.hot.catalog import CatalogCache
from api.hot.offer_book import PromotionBook
from api.hot.prices import PriceAggregates
from api.hot.refresher import Refresher
from api.hot.sticky import StickyMap
from api.metrics import Metrics
from api.posterior_cache import PosteriorCache
from api.protection import RateLimiter
from api.security import Principal, Role
from api.services.context import ContextSchemaCache
from api.services.experiments import ExperimentCache, QuoteExperiment
from api.services.guardrails import GuardrailCache
from api.services.idempotency import IdempotencyStore
from api.services.jurisdictions import JurisdictionCache
from api.services.keys import authenticate
from api.services.quotes import QuoteService
from api.settings import Settings
from api.writer import GroupWriter
from pricing.policy import ListPricePolicy, PricePolicy
from pricing.safe_start import SafetyBudget

__all__ = ["AppState", "PrincipalDep", "SessionDep", "StateDep", "limited", "require"]

AUTH_CACHE_SECONDS = 10.0


@dataclass
class AppState:
    """What every request can reach: settings, database, policy, metrics."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    policy: PricePolicy
    posterior: PosteriorCache
    guardrails: GuardrailCache
    context_schema: ContextSchemaCache
    jurisdictions: JurisdictionCache
    experiments: ExperimentCache
    catalog: CatalogCache
    prices: PriceAggregates
    promotions: PromotionBook
    sticky: StickyMap
    writer: GroupWriter
    quotes: QuoteService
    idempotency: IdempotencyStore
    #: Builds the engine's policy with a variant's overrides (guardrail version, epsilon).
    policy_factory: Callable[[int | None, float | None], PricePolicy] | None = None
    #: Drops erased customers (by id hash) from this worker's memory.
    forget_customers: Callable[[set[str]], None] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    #: The background refresher of the quote path's state (set at start-up).
    refresher: Refresher | None = None
    #: Safe start's budget of allowed loss against list prices (None: off).
    safety: SafetyBudget | None = None
    #: Per-key request rates of the quote and outcome endpoints (this worker).
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter({}, burst_seconds=1.0))
    _variant_policies: dict[tuple[bool, int | None, float | None], PricePolicy] = field(
        default_factory=dict
    )
    _auth_cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    _auth_lock: threading.Lock = field(default_factory=threading.Lock)

    def catalog_changed(self) -> None:
        """Re-read the catalog now (after a change made through this worker)."""
        self.catalog.refresh(force=True)

    def promotions_changed(self) -> None:
        """Re-read promotions now and take leases on new capped ones."""
        self.promotions.refresh()

    def cached_principal(self, key: str) -> tuple[bool, Principal | None]:
        """(hit, principal) from the few-second authentication cache, without a read."""
        with self._auth_lock:
            hit = self._auth_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < AUTH_CACHE_SECONDS:
            return True, hit[1]
        return False, None

    def principal_for(self, key: str) -> Principal | None:
        """Authenticate ``key``, caching the answer for a few seconds per worker."""
        now = time.monotonic()
        known, principal = self.cached_principal(key)
        if known:
            return principal
        with self.read_sessions() as session:
            principal = authenticate(session, key=key, pepper=self.settings.pepper())
        with self._auth_lock:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[key] = (now, principal)
        return principal

    def policy_for(self, experiment: QuoteExperiment | None) -> PricePolicy:
        """The policy of a customer's experiment variant(s); the default one otherwise."""
        if experiment is None:
            return self.policy
        if experiment.control:
            key: tuple[bool, int | None, float | None] = (True, None, None)
        elif (experiment.guardrail_version, experiment.epsilon) == (
            None,
            None,
        ) or self.policy_factory is None:
            return self.policy
        else:
            key = (False, experiment.guardrail_version, experiment.epsilon)
        policy = self._variant_policies.get(key)
        if policy is None:
            if key[0]:
                policy = ListPricePolicy()
            else:
                assert self.policy_factory is not None
                policy = self.policy_factory(key[1], key[2])
            self._variant_policies[key] = policy
        return policy

    def forget_keys(self) -> None:
        """Drop cached authentications (after a key is revoked on this worker)."""
        with self._auth_lock:
            self._auth_cache.clear()


async def get_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving ``request``."""
    state: AppState = request.app.state.pricing
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(request: Request, state: StateDep) -> Iterator[Session]:
    """A session for one request; services open and commit their own transactions.

    Safe methods (GET, HEAD) get a read-only session, which on SQLite never waits for
    or blocks a writer.
    """
    factory = state.read_sessions if request.method in {"GET", "HEAD"} else state.sessions
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


#: Declares the scheme in the OpenAPI document (the Authorize button of /docs); the
#: header is checked below, with this service's own 401 messages.
_BEARER = HTTPBearer(
    auto_error=False, scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer pe_...` (`pricing-engine create-key`; "
    "the demo prints its keys).",
)  # fmt: skip


async def get_principal(
    request: Request,
    state: StateDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Principal:
    """Authenticate the ``Authorization: Bearer <key>`` header (401 when missing or wrong).

    A key seen in the last few seconds is answered from memory; otherwise the key table
    is read in the thread pool (never on the event loop), for at most
    ``PRICING_WRITE_TIMEOUT_SECONDS`` (then 503: a slow database never holds a request).
    """
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    known, principal = state.cached_principal(key.strip())
    if not known:
        try:
            principal = await asyncio.wait_for(
                run_in_threadpool(state.principal_for, key.strip()),
                state.settings.write_timeout_seconds,
            )
        except TimeoutError:
            raise Unavailable(
                "the API key cannot be checked now: the database is slow or unreachable; retry"
            ) from None
    if principal is None:
        raise Unauthenticated("invalid or revoked API key")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency allowing ``roles`` (and ``admin``, which may do everything); else 403."""
    allowed = {*roles, Role.ADMIN}

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"role {principal.role.value!r} may not do this; allowed: {names}")
        return principal

    return check


def limited(kind: str, *roles: Role) -> Callable[..., Awaitable[Principal]]:
    """Like :func:`require`, then take one request from the key's ``kind`` rate limit
    (429 with Retry-After when it is spent)."""
    allowed = require(*roles)

    # A default, not ``Annotated``: the annotation would name a local, which FastAPI cannot
    # resolve under postponed evaluation.
    async def check(state: StateDep, principal: Principal = Depends(allowed)) -> Principal:
        state.limiter.check(str(principal.key_id), kind)
        return principal

    return check
