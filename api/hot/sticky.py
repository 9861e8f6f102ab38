"""Sticky quotes: this worker's recent decisions per customer, with the log as fallback.

A SKU quoted to a customer keeps its price until the quote expires. The map holds this
worker's own decisions (added after they commit) and what an indexed read of the log
returned (:func:`load_customer`, by customer × SKU × expiry), so a lookup costs the same
on a busy day as on an empty one. Outcomes recorded by any worker mark entries reported
within one refresh (:meth:`StickyMap.mark_reported`).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from api.orm import Decision, Outcome
from pricing.cart import StickyQuote

__all__ = ["StickyMap", "load_customer"]


# An entry is kept as a plain tuple of atomic values (the decision id as its 128-bit
# integer), not as a StickyQuote: CPython's collector stops tracking such tuples, and the
# dicts that hold only them, so a map of 200,000 customers adds nothing to the full
# collections that pause every thread (as StickyQuote and UUID objects did: three tracked
# objects per quote, measured, and full collections of 50-120 ms under load).
_Packed = tuple[Any, ...]
_ID, _IS_UUID, _EXPIRES, _REPORTED = 0, 1, 7, 8


def _pack(entry: StickyQuote) -> _Packed:
    d = entry.decision_id
    key = d.int if isinstance(d, uuid.UUID) else d
    return (key, isinstance(d, uuid.UUID), entry.segment, entry.quantity, entry.price_minor,
            entry.personalized, entry.model_version, entry.expires_at, entry.reported,
            entry.propensity, entry.fallback, tuple(entry.reasons), entry.promotion,
            entry.discount_minor)  # fmt: skip


def _unpack(packed: _Packed) -> StickyQuote:
    d = uuid.UUID(int=packed[_ID]) if packed[_IS_UUID] else packed[_ID]
    return StickyQuote(d, *packed[2:])


class StickyMap:
    """Customer → SKU → :class:`~pricing.cart.StickyQuote`, least recently used dropped.

    Parameters
    ----------
    max_customers : int
        Customers kept.
    """

    def __init__(self, max_customers: int = 200_000) -> None:
        self.max_customers = max_customers
        self._map: OrderedDict[str, dict[str, _Packed]] = OrderedDict()
        self._by_decision: dict[int, tuple[str, str]] = {}  # UUID.int -> (customer, SKU)
        self._lock = threading.Lock()

    def lookup(
        self, customer: str, skus: Iterable[str], now: datetime
    ) -> tuple[dict[str, StickyQuote], list[str]]:
        """Unexpired entries for ``skus``, and the SKUs this map cannot answer for."""
        found: dict[str, StickyQuote] = {}
        missing: list[str] = []
        with self._lock:
            entries = self._map.get(customer)
            if entries is not None:
                self._map.move_to_end(customer)
            for sku in skus:
                entry = entries.get(sku) if entries is not None else None
                if entry is not None and entry[_EXPIRES] > now:
                    found[sku] = _unpack(entry)
                else:
                    missing.append(sku)
        return found, missing

    def put(self, customer: str, entries: Sequence[tuple[str, StickyQuote]]) -> None:
        """Remember decisions (newest wins per SKU)."""
        if not entries:
            return
        with self._lock:
            current = self._map.setdefault(customer, {})
            self._map.move_to_end(customer)
            for sku, entry in entries:
                old = current.get(sku)
                if old is not None and old[_EXPIRES] > entry.expires_at and not old[_REPORTED]:
                    continue
                packed = current[sku] = _pack(entry)
                if packed[_IS_UUID]:
                    self._by_decision[packed[_ID]] = (customer, sku)
            while len(self._map) > self.max_customers:
                _, dropped = self._map.popitem(last=False)
                for packed in dropped.values():
                    if packed[_IS_UUID]:
                        self._by_decision.pop(packed[_ID], None)

    def mark_reported(self, decision_ids: Iterable[uuid.UUID]) -> None:
        """An outcome is stored for these decisions: a repeat becomes a new decision."""
        with self._lock:
            for decision_id in decision_ids:
                key = decision_id.int
                where = self._by_decision.pop(key, None)
                if where is None:
                    continue
                entries = self._map.get(where[0])
                packed = entries.get(where[1]) if entries is not None else None
                if (
                    entries is not None
                    and packed is not None
                    and packed[_IS_UUID]
                    and packed[_ID] == key
                ):
                    entries[where[1]] = (*packed[:_REPORTED], True, *packed[_REPORTED + 1 :])

    def forget(self, hashes: set[str]) -> int:
        """Drop the customers whose id hashes (:func:`api.security.customer_hash`) are given
        (they were erased); returns how many were held."""
        from api.security import customer_hash

        with self._lock:
            gone = [c for c in self._map if customer_hash(c) in hashes]
            for customer in gone:
                for packed in self._map.pop(customer).values():
                    if packed[_IS_UUID]:
                        self._by_decision.pop(packed[_ID], None)
        return len(gone)


_STICKY = (
    select(Decision.id, Decision.sku, Decision.segment, Decision.quantity, Decision.price_minor,
           Decision.personalized, Decision.model_version, Decision.expires_at, Outcome.id,
           Decision.propensity, Decision.guardrail_trail, Decision.promotion,
           Decision.discount_minor)
    .outerjoin(Outcome, Outcome.decision_id == Decision.id)
    .where(Decision.customer_id == bindparam("customer"),
           Decision.sku.in_(bindparam("skus", expanding=True)),
           Decision.expires_at > bindparam("now"))
    .order_by(Decision.created_at)
)  # fmt: skip


def load_customer(
    connection: Connection, *, customer: str, skus: Sequence[str], now: datetime
) -> dict[str, StickyQuote]:
    """One customer's newest unexpired decision per SKU in ``skus`` (reported or not).

    One indexed read (customer × SKU × expiry), built once with bound parameters and run
    on a plain connection (no ORM session).
    """
    sticky: dict[str, StickyQuote] = {}
    if not skus:
        return sticky
    rows = connection.execute(_STICKY, {"customer": customer, "skus": list(skus), "now": now})
    for (d_id, sku, segment, quantity, price, personalized, version, expires, outcome,
         propensity, trail, promotion, discount) in rows:  # fmt: skip
        trail = trail or {}
        sticky[sku] = StickyQuote(
            d_id, segment, quantity, price, personalized, version, expires,
            outcome is not None, propensity, bool(trail.get("fallback", False)),
            tuple(trail.get("reasons", [])), promotion, discount,
        )  # fmt: skip
    return sticky
