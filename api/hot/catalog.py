"""Products and segments in memory, re-read when the tables change."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.orm import Product, Segment

__all__ = ["CatalogCache", "ProductFacts"]


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """A product as the quote path needs it (money in minor units)."""

    sku: str
    category: str
    currency: str
    list_price_minor: int
    unit_cost_minor: int
    active: bool


class CatalogCache:
    """Every product and segment; :meth:`refresh` reloads them when either table changed.

    Parameters
    ----------
    sessions : sessionmaker
        Read-only sessions.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._signature: tuple[object, ...] | None = None
        self.products: dict[str, ProductFacts] = {}
        self.segments: dict[str, bool] = {}

    def refresh(self, *, force: bool = False) -> bool:
        """Reload if the tables changed since the last load (True when reloaded)."""
        with self._lock, self._sessions() as session:
            signature = (
                *session.execute(select(func.count(), func.max(Product.updated_at))).one(),
                *session.execute(select(func.count(), func.max(Segment.updated_at))).one(),
            )
            if not force and signature == self._signature:
                return False
            products = {
                row.sku: ProductFacts(row.sku, row.category, row.currency, row.list_price_minor,
                                      row.unit_cost_minor, row.active)
                for row in session.execute(
                    select(Product.sku, Product.category, Product.currency,
                           Product.list_price_minor, Product.unit_cost_minor, Product.active)
                )
            }  # fmt: skip
            segments = {key: bool(active) for key, active in session.execute(select(Segment.key, Segment.active))}
            # Swap whole dicts: readers see the old catalog or the new one, never a mix.
            self.products, self.segments = products, segments
            self._signature = signature
            return True
