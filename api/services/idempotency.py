"""Idempotency keys of quotes: a retried quote request gets the same quote back.

A request with an ``Idempotency-Key`` carries an
:class:`~api.services.quote_writes.IdempotencyClaim` to the group writer, which stores
the quote's response in the transaction that logs its decisions
(``quote_idempotency``). A retry is answered from this worker's memory when it made the
quote, otherwise the writer finds the key taken and the request reads the stored quote
(one primary-key read). A key sent again with a different request is refused
(:class:`~api.errors.Invalid` naming the key): the key
names one request, and answering another one with it would hide a client's bug.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from api.errors import Invalid
from api.orm import QuoteIdempotency, utcnow
from api.schemas.quotes import QuoteRequest
from api.services.quote_writes import IdempotencyClaim

__all__ = ["IDEMPOTENCY_HEADER", "IdempotencyStore", "purge_due", "purge_expired", "purge_expired_in"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
_WHERE = ["header", IDEMPOTENCY_HEADER]


class IdempotencyStore:
    """Claims for keyed quote requests and the quotes already made under them.

    Parameters
    ----------
    read_engine : Engine
        For the stored quote of a key this worker did not make.
    ttl : timedelta
        How long a key is remembered.
    capacity : int
        Most keys kept in this worker's memory (least recently used go first; the
        database still has them).
    """

    def __init__(self, read_engine: Any, *, ttl: timedelta, capacity: int = 20_000) -> None:
        self._engine = read_engine
        self.ttl = ttl
        self.capacity = capacity
        self._recent: OrderedDict[tuple[str, str], tuple[str, str, datetime]] = OrderedDict()
        #: Customer of each remembered quote (an erasure drops them).
        self._customers: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def claim(self, scope: str, key: str, request: QuoteRequest) -> IdempotencyClaim:
        """The claim of ``key`` (sent by the API key ``scope``) for ``request``."""
        digest = hashlib.sha256(request.model_dump_json().encode("utf-8")).hexdigest()
        return IdempotencyClaim(scope, key, digest, utcnow() + self.ttl, request.customer_id)

    def _check(self, claim: IdempotencyClaim, request_hash: str) -> None:
        if request_hash != claim.request_hash:
            raise Invalid(
                _WHERE,
                f"idempotency key {claim.key!r} was already used for a different request; "
                "send a new key for a new request",
            )

    def recent(self, claim: IdempotencyClaim) -> str | None:
        """The quote this worker made under the claim's key (JSON), if it remembers one.

        Raises
        ------
        Invalid
            The key was used for a different request (names the header).
        """
        with self._lock:
            found = self._recent.get((claim.scope, claim.key))
            if found is None:
                return None
            request_hash, body, expires_at = found
            if expires_at <= utcnow():
                del self._recent[(claim.scope, claim.key)]
                return None
            self._recent.move_to_end((claim.scope, claim.key))
        self._check(claim, request_hash)
        return body

    def remember(
        self, claim: IdempotencyClaim, body: str, expires_at: datetime | None = None
    ) -> None:
        """Keep the committed quote ``body`` (JSON) of ``claim`` in memory."""
        until = expires_at or claim.expires_at
        with self._lock:
            slot = (claim.scope, claim.key)
            self._recent[slot] = (claim.request_hash, body, until)
            self._recent.move_to_end(slot)
            if claim.customer is not None:
                self._customers[slot] = claim.customer
            while len(self._recent) > self.capacity:
                dropped, _ = self._recent.popitem(last=False)
                self._customers.pop(dropped, None)

    def forget(self, hashes: set[str]) -> int:
        """Drop the remembered quotes of erased customers (by id hash); returns how many."""
        from api.security import customer_hash

        with self._lock:
            gone = [s for s, c in self._customers.items() if customer_hash(c) in hashes]
            for slot in gone:
                self._recent.pop(slot, None)
                del self._customers[slot]
        return len(gone)

    def stored(self, claim: IdempotencyClaim) -> str:
        """The committed quote under the claim's key (JSON), read from the database.

        Called after the writer found the key taken, so the row exists.

        Raises
        ------
        Invalid
            The key was used for a different request (names the header).
        """
        table = QuoteIdempotency
        with self._engine.connect() as connection:
            row = connection.execute(
                select(table.request_hash, table.response, table.expires_at).where(
                    table.scope == claim.scope, table.key == claim.key
                )
            ).one()
        self._check(claim, row.request_hash)
        self.remember(claim, row.response, row.expires_at)
        return str(row.response)


def purge_expired(
    sessions: sessionmaker[Session], now: datetime | None = None, *, limit: int = 5000
) -> int:
    """Delete up to ``limit`` expired keys (one short transaction; run it periodically):
    :func:`purge_expired_in` on a session of its own.

    Parameters
    ----------
    sessions : sessionmaker
        Writable sessions.
    now : datetime, optional
        Defaults to the current UTC time.
    limit : int
        Most rows deleted in one call, so the transaction stays short.

    Returns
    -------
    int
        Rows deleted.
    """
    with sessions() as session, session.begin():
        return purge_expired_in(session, now or utcnow(), limit)


def purge_due(session: Session, now: datetime) -> bool:
    """Whether any key has expired (one indexed read, no lock)."""
    table = QuoteIdempotency
    return session.scalar(select(table.key).where(table.expires_at <= now).limit(1)) is not None


def purge_expired_in(session: Session, now: datetime, limit: int = 5000) -> int:
    """Inside the caller's transaction: delete up to ``limit`` keys expired at ``now``;
    returns how many."""
    table = QuoteIdempotency
    expired = select(table.scope, table.key).where(table.expires_at <= now).limit(limit)
    result: Any = session.execute(delete(table).where(tuple_(table.scope, table.key).in_(expired)))
    return int(result.rowcount or 0)
