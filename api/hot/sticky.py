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
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, bindparam, select

from api.orm import Decision, Outcome
from pricing.cart import StickyQuote

__all__ = ["StickyMap", "load_customer"]


class StickyMap:
    """Customer → SKU → :class:`~pricing.cart.StickyQuote`, least recently used dropped.

    Parameters
    ----------
    max_customers : int
        Customers kept.
    """

    def __init__(self, max_customers: int = 200_000) -> None:
        self.max_customers = max_customers
        self._map: OrderedDict[str, dict[str, StickyQuote]] = OrderedDict()
        self._by_decision: dict[uuid.UUID, tuple[str, str]] = {}
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
                if entry is not None and entry.expires_at > now:
                    found[sku] = entry
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
                if old is not None and old.expires_at > entry.expires_at and not old.reported:
                    continue
                current[sku] = entry
                if isinstance(entry.decision_id, uuid.UUID):
                    self._by_decision[entry.decision_id] = (customer, sku)
            while len(self._map) > self.max_customers:
                _, dropped = self._map.popitem(last=False)
                for entry in dropped.values():
                    if isinstance(entry.decision_id, uuid.UUID):
                        self._by_decision.pop(entry.decision_id, None)

    def mark_reported(self, decision_ids: Iterable[uuid.UUID]) -> None:
        """An outcome is stored for these decisions: a repeat becomes a new decision."""
        with self._lock:
            for decision_id in decision_ids:
                where = self._by_decision.pop(decision_id, None)
                if where is None:
                    continue
                entries = self._map.get(where[0])
                entry = entries.get(where[1]) if entries is not None else None
                if entries is not None and entry is not None and entry.decision_id == decision_id:
                    entries[where[1]] = replace(entry, reported=True)


    def forget(self, hashes: set[str]) -> int:
        """Drop the customers whose id hashes (:func:`api.security.customer_hash`) are given
        (they were erased); returns how many were held."""
        from api.security import customer_hash

        with self._lock:
            gone = [c for c in self._map if customer_hash(c) in hashes]
            for customer in gone:
                for entry in self._map.pop(customer).values():
                    if isinstance(entry.decision_id, uuid.UUID):
                        self._by_decision.pop(entry.decision_id, None)
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
