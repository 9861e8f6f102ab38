"""Request dependencies: the app's state, a database session, and role checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from api.metrics import Metrics
from api.posterior_cache import PosteriorCache
from api.security import Principal, Role
from api.services.context import ContextSchemaCache
from api.services.experiments import ExperimentCache, QuoteExperiment
from api.services.guardrails import GuardrailCache
from api.services.keys import authenticate
from api.settings import Settings
from pricing.policy import ListPricePolicy, PricePolicy

__all__ = ["AppState", "PrincipalDep", "SessionDep", "StateDep", "require"]

AUTH_CACHE_SECONDS = 10.0
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


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
    experiments: ExperimentCache
    #: Builds the engine's policy with a variant's overrides (guardrail version, epsilon).
    policy_factory: Callable[[int | None, float | None], PricePolicy] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    _variant_policies: dict[tuple[bool, int | None, float | None], PricePolicy] = field(
        default_factory=dict
    )
    _auth_cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    _auth_lock: threading.Lock = field(default_factory=threading.Lock)

    def principal_for(self, key: str) -> Principal | None:
        """Authenticate ``key``, caching the answer for a few seconds per worker."""
        now = time.monotonic()
        with self._auth_lock:
            hit = self._auth_cache.get(key)
        if hit is not None and now - hit[0] < AUTH_CACHE_SECONDS:
            return hit[1]
        with self.read_sessions() as session:
            principal = authenticate(session, key=key)
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


def get_state(request: Request) -> AppState:
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


def get_principal(request: Request, state: StateDep) -> Principal:
    """Authenticate the ``Authorization: Bearer <key>`` header (401 when missing or wrong)."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401, "missing API key: send 'Authorization: Bearer <key>'", headers=_CHALLENGE
        )
    principal = state.principal_for(key.strip())
    if principal is None:
        raise ApiError(401, "invalid or revoked API key", headers=_CHALLENGE)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """Dependency allowing ``roles`` (and ``admin``, which may do everything); else 403."""
    allowed = {*roles, Role.ADMIN}

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise ApiError(403, f"role {principal.role.value!r} may not do this; allowed: {names}")
        return principal

    return check
