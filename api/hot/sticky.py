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


# A customer's entries are one flat tuple of atomic values (per entry: the SKU, the
# decision id as its 128-bit integer, ..., the reasons joined in one string), not
# StickyQuotes in a dict. CPython's collector stops tracking a tuple of atomic values the
# first time a collection sees it, so nothing of the map reaches the oldest generation.
# Nested tuples are not enough: an outer tuple seen before its inner one stays tracked,
# and a collection of the middle generation moves what it keeps straight to the oldest.
# A dict that ever held a fresh tuple stays tracked until a *full* collection. Measured
# under load (benchmarks.systems setting, 2026-12-07): per-customer dicts made
# 35,000-68,000 tracked objects in the oldest generation, every full collection (25-44 ms,
# up to 250 ms on a loaded host) walked them, and their number set off the next one.
# StickyQuote and UUID objects before them did the same (three tracked objects per quote,
# full collections of 50-120 ms).
_Packed = tuple[Any, ...]
#: A customer's entries, at most one per SKU, one after the other (_WIDTH values each).
_Entries = tuple[Any, ...]
_SKU, _ID, _IS_UUID, _EXPIRES, _REPORTED, _REASONS, _WIDTH = 0, 1, 2, 8, 9, 12, 15
#: Joins an entry's reasons (machine-made names such as ``promotion:TEN``).
_SEP = "\x1f"


def _each(entries: _Entries) -> list[_Packed]:
    """A customer's entries, one tuple each."""
    return [entries[i : i + _WIDTH] for i in range(0, len(entries), _WIDTH)]


def _get(entries: _Entries, sku: str) -> _Packed | None:
    for i in range(0, len(entries), _WIDTH):
        if entries[i + _SKU] == sku:
            return entries[i : i + _WIDTH]
    return None


def _pack(sku: str, entry: StickyQuote) -> _Packed:
    d = entry.decision_id
    key = d.int if isinstance(d, uuid.UUID) else d
    reasons: Any = tuple(entry.reasons)
    if not reasons:
        reasons = None
    elif not any(_SEP in r for r in reasons):  # else kept as the tuple (one level deeper)
        reasons = _SEP.join(reasons)
    return (sku, key, isinstance(d, uuid.UUID), entry.segment, entry.quantity, entry.price_minor,
            entry.personalized, entry.model_version, entry.expires_at, entry.reported,
            entry.propensity, entry.fallback, reasons, entry.promotion,
            entry.discount_minor)  # fmt: skip


def _unpack(packed: _Packed) -> StickyQuote:
    d = uuid.UUID(int=packed[_ID]) if packed[_IS_UUID] else packed[_ID]
    reasons = packed[_REASONS]
    if reasons is None:
        reasons = ()
    elif isinstance(reasons, str):
        reasons = tuple(reasons.split(_SEP))
    (_sku, _id, _uuid, segment, quantity, price, personalized, version, expires, reported,
     propensity, fallback, _reasons, promotion, discount) = packed  # fmt: skip
    return StickyQuote(d, segment, quantity, price, personalized, version, expires, reported,
                       propensity, fallback, reasons, promotion, discount)  # fmt: skip


class StickyMap:
    """Customer → SKU → :class:`~pricing.cart.StickyQuote`, least recently used dropped.

    Parameters
    ----------
    max_customers : int
        Customers kept.
    """

    def __init__(self, max_customers: int = 200_000) -> None:
        self.max_customers = max_customers
        self._map: OrderedDict[str, _Entries] = OrderedDict()
        #: UUID.int -> customer: atomic keys and values, so the dict is never tracked.
        self._by_decision: dict[int, str] = {}
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
                entry = _get(entries, sku) if entries is not None else None
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
            # A working dict for this call only (a 100-line cart is one rebuild, not 100).
            kept = {packed[_SKU]: packed for packed in _each(self._map.get(customer, ()))}
            changed = False
            for sku, entry in entries:
                old = kept.get(sku)
                if old is not None and old[_EXPIRES] > entry.expires_at and not old[_REPORTED]:
                    continue
                if old is not None and old[_IS_UUID]:
                    self._by_decision.pop(old[_ID], None)
                packed = kept[sku] = _pack(sku, entry)
                changed = True
                if packed[_IS_UUID]:
                    self._by_decision[packed[_ID]] = customer
            if changed:
                self._map[customer] = tuple(value for packed in kept.values() for value in packed)
            if customer in self._map:
                self._map.move_to_end(customer)
            while len(self._map) > self.max_customers:
                _, dropped = self._map.popitem(last=False)
                for packed in _each(dropped):
                    if packed[_IS_UUID]:
                        self._by_decision.pop(packed[_ID], None)

    def mark_reported(self, decision_ids: Iterable[uuid.UUID | int]) -> None:
        """An outcome is stored for these decisions (UUIDs or their 128-bit integers): a
        repeat becomes a new decision."""
        with self._lock:
            by_customer: dict[str, set[int]] = {}
            for decision_id in decision_ids:
                key = decision_id if isinstance(decision_id, int) else decision_id.int
                customer = self._by_decision.pop(key, None)
                if customer is not None:
                    by_customer.setdefault(customer, set()).add(key)
            # Each customer's tuple is rebuilt once, however many of its entries are marked
            # (the outcomes of a 100-line cart arrive together).
            for customer, keys in by_customer.items():
                entries = self._map.get(customer)
                if entries is None:
                    continue
                values: list[Any] = []
                changed = False
                for packed in _each(entries):
                    if packed[_IS_UUID] and packed[_ID] in keys and not packed[_REPORTED]:
                        packed = (*packed[:_REPORTED], True, *packed[_REPORTED + 1 :])
                        changed = True
                    values.extend(packed)
                if changed:
                    self._map[customer] = tuple(values)

    def forget(self, hashes: set[str]) -> int:
        """Drop the customers whose id hashes (:func:`api.security.customer_hash`) are given
        (they were erased); returns how many were held."""
        from api.security import customer_hash

        with self._lock:
            gone = [c for c in self._map if customer_hash(c) in hashes]
            for customer in gone:
                for packed in _each(self._map.pop(customer)):
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
