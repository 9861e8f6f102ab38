"""Erasure of a customer (the right to be forgotten), keeping what the engine learned.

:func:`erase_customer` replaces the customer's identifier by a random pseudonym
everywhere it is stored (decisions, experiment exposures, per-customer promotion counts),
removes the raw declared context of their decisions, and drops the stored responses of
their quotes (idempotency keys). The pseudonym is random, so nothing links it back to the
identifier. What the engine learned stays exactly as it was: cells group decisions by
segment, SKU, price, promotion and the schema's feature key (which holds declared
feature values only, never an identifier), outcomes and every money total are untouched,
and the decision log keeps its propensities, so OPE estimates do not move.

Workers hold recent customers in memory (sticky quotes, idempotent replays, promotion
counts): the erasure is announced by the customer id's hash in ``customer_erasures``,
which every worker's refresher reads within a second and which is deleted after a day.
A later quote for the same identifier starts fresh: no sticky price, no stored exposure,
no per-customer promotion count.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from api.orm import (
    CustomerErasure,
    Decision,
    ExperimentExposure,
    PromotionCustomerUsage,
    QuoteIdempotency,
    utcnow,
)
from api.security import Principal, customer_hash
from api.services.audit import record_change

__all__ = [
    "ERASURE_NOTICE", "ErasureFeed", "ErasureResult", "erase_customer", "notices_due", "purge_notices",
    "purge_notices_in",
]

#: How long the workers' notice of an erasure is kept (it holds the id's hash).
ERASURE_NOTICE = timedelta(days=1)


@dataclass(frozen=True)
class ErasureResult:
    """What an erasure changed."""

    pseudonym: str
    decisions: int
    exposures: int
    promotion_counts: int
    stored_quotes: int


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


def erase_customer(session: Session, customer_id: str, *, actor: Principal | None) -> ErasureResult:
    """Pseudonymize ``customer_id`` everywhere, irreversibly, in one transaction (audited).

    Erasing an unknown or already erased identifier changes nothing and is not an error
    (the audit entry records zero rows).
    """
    pseudonym = f"erased-{uuid.uuid4().hex}"
    needle = f'"customer_id":{json.dumps(customer_id)}'
    with session.begin():
        decisions = _count(session.execute(
            update(Decision).where(Decision.customer_id == customer_id)
            .values(customer_id=pseudonym, context={})
            .execution_options(synchronize_session=False)))  # fmt: skip
        exposures = _count(session.execute(
            update(ExperimentExposure).where(ExperimentExposure.unit_id == customer_id)
            .values(unit_id=pseudonym).execution_options(synchronize_session=False)))  # fmt: skip
        counts = _count(session.execute(
            update(PromotionCustomerUsage).where(PromotionCustomerUsage.customer_id == customer_id)
            .values(customer_id=pseudonym).execution_options(synchronize_session=False)))  # fmt: skip
        stored = _count(session.execute(
            delete(QuoteIdempotency).where(QuoteIdempotency.response.contains(needle))
            .execution_options(synchronize_session=False)))  # fmt: skip
        session.add(CustomerErasure(customer_hash=customer_hash(customer_id), erased_at=utcnow()))
        result = ErasureResult(pseudonym, decisions, exposures, counts, stored)
        record_change(
            session, actor=actor, action="erase", entity="customer", entity_id=pseudonym,
            before=None,
            after={"decisions": decisions, "exposures": exposures,
                   "promotion_counts": counts, "stored_quotes": stored},
        )  # fmt: skip
    return result


class ErasureFeed:
    """A worker's reader of erasure notices: calls ``forget`` with the new hashes.

    Parameters
    ----------
    sessions : sessionmaker
        Read sessions.
    forget : callable
        Called with the set of customer hashes erased since the last call.
    """

    def __init__(self, sessions: Any, forget: Any) -> None:
        self._sessions = sessions
        self._forget = forget
        self._last_id = 0
        self._started = utcnow()

    def __call__(self, now: datetime | None = None) -> int:
        """Read new notices; returns how many."""
        with self._sessions() as session:
            rows = session.execute(
                select(CustomerErasure.id, CustomerErasure.customer_hash)
                .where(CustomerErasure.id > self._last_id)
                .order_by(CustomerErasure.id)
            ).all()
        if rows:
            self._last_id = max(r.id for r in rows)
            self._forget({r.customer_hash for r in rows})
        return len(rows)


def purge_notices(sessions: Any, now: datetime | None = None) -> int:
    """Delete erasure notices older than :data:`ERASURE_NOTICE` (a transaction of its own:
    :func:`purge_notices_in`)."""
    with sessions() as session, session.begin():
        return purge_notices_in(session, now or utcnow())


def notices_due(session: Session, now: datetime) -> bool:
    """Whether any erasure notice is older than :data:`ERASURE_NOTICE` (an indexed read)."""
    old = select(CustomerErasure.id).where(CustomerErasure.erased_at < now - ERASURE_NOTICE)
    return session.scalar(old.limit(1)) is not None


def purge_notices_in(session: Session, now: datetime) -> int:
    """Inside the caller's transaction: delete the notices older than
    :data:`ERASURE_NOTICE` at ``now``; returns how many."""
    result = session.execute(
        delete(CustomerErasure).where(CustomerErasure.erased_at < now - ERASURE_NOTICE)
    )
    return _count(result)
