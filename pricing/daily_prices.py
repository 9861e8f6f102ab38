"""Running per-SKU, per-UTC-day price aggregates: what guardrails and the prior-price rule read.

A quote never scans the decision log. Each worker keeps, per SKU and UTC day, the first
and last time and price served, the lowest and highest price, and the lowest price paid
after promotions (:class:`DayPrices`). Its own decisions update it at once
(:meth:`PriceBook.observe`); the rows other workers persisted arrive through
:meth:`PriceBook.merge`. Every field combines by a join (min, max, latest), so merging
the same row twice, or rows in any order, gives the same state: workers converge on the
database's rows whatever they saw first.

Derived quantities:

- :meth:`PriceBook.anchor`: the close (last price served) of the most recent earlier day
  on which the SKU sold, within ``window`` days. ``max_change`` and ``segment_gap`` are
  measured from it (:class:`pricing.guardrails.ProductFacts`). Yesterday's rows are final
  once its last commits land (about a second after midnight UTC), so every worker reads
  the same anchor all day.
- :meth:`PriceBook.prior_low`: the lowest price applied in the last ``window`` days (the
  EU prior-price rule's reference for an announced reduction).

All money is integer minor units.

Examples
--------
>>> from datetime import UTC, datetime
>>> book = PriceBook()
>>> book.observe("A", datetime(2026, 3, 1, 10, tzinfo=UTC), 900, 900)
>>> book.observe("A", datetime(2026, 3, 1, 18, tzinfo=UTC), 950, 850)
>>> book.anchor("A", datetime(2026, 3, 2, tzinfo=UTC).date())
950
>>> book.prior_low("A", datetime(2026, 3, 2, tzinfo=UTC).date())
850
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

__all__ = ["WINDOW_DAYS", "DayPrices", "PriceBook"]

#: Days of history kept per SKU (the EU prior-price rule looks back 30 days).
WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class DayPrices:
    """One SKU's prices on one UTC day.

    Attributes
    ----------
    sku : str
    day : date
        UTC calendar day.
    first_at, last_at : datetime
        First and last decision time (UTC).
    last_price : int
        Price of the last decision (ties in time: the higher price), minor units.
    low, high : int
        Lowest and highest price served to any segment, minor units.
    low_final : int
        Lowest price paid after a promotion's discount, minor units.
    decisions : int
        Decisions counted (exact in the database; at least what this worker has seen).
    """

    sku: str
    day: date
    first_at: datetime
    last_at: datetime
    last_price: int
    low: int
    high: int
    low_final: int
    decisions: int = 1

    def join(self, other: DayPrices) -> DayPrices:
        """The combination of two views of the same (SKU, day): commutative and idempotent."""
        if (other.sku, other.day) != (self.sku, self.day):
            raise ValueError(f"cannot join {other.sku}@{other.day} into {self.sku}@{self.day}")
        latest = max((self.last_at, self.last_price), (other.last_at, other.last_price))
        return replace(
            self,
            first_at=min(self.first_at, other.first_at),
            last_at=latest[0],
            last_price=latest[1],
            low=min(self.low, other.low),
            high=max(self.high, other.high),
            low_final=min(self.low_final, other.low_final),
            decisions=max(self.decisions, other.decisions),
        )


class PriceBook:
    """Per-SKU daily price aggregates of one worker (not thread-safe: callers lock).

    Parameters
    ----------
    window : int
        Days kept per SKU, today excluded.
    """

    def __init__(self, window: int = WINDOW_DAYS) -> None:
        self.window = window
        self._days: dict[str, dict[date, DayPrices]] = {}

    def observe(self, sku: str, at: datetime, price_minor: int, final_minor: int) -> DayPrices:
        """Fold one served price into ``sku``'s row for the day of ``at`` (UTC)."""
        day = at.date()
        row = DayPrices(sku, day, at, at, price_minor, price_minor, price_minor, final_minor)
        days = self._days.setdefault(sku, {})
        current = days.get(day)
        if current is not None:
            row = current.join(row)
            row = replace(row, decisions=current.decisions + 1)
        days[day] = row
        return row

    def merge(self, rows: Iterable[DayPrices]) -> None:
        """Join rows read from the database (other workers' decisions included)."""
        for row in rows:
            days = self._days.setdefault(row.sku, {})
            current = days.get(row.day)
            days[row.day] = row if current is None else current.join(row)

    def forget_before(self, today: date) -> None:
        """Drop days older than the window (call once a day)."""
        oldest = today - timedelta(days=self.window)
        for days in self._days.values():
            for day in [d for d in days if d < oldest]:
                del days[day]

    def day(self, sku: str, day: date) -> DayPrices | None:
        """The row of ``sku`` on ``day``, if it sold that day."""
        return self._days.get(sku, {}).get(day)

    def anchor(self, sku: str, today: date) -> int | None:
        """Close of the most recent day before ``today`` (within the window) it sold."""
        days = self._days.get(sku)
        if not days:
            return None
        oldest = today - timedelta(days=self.window)
        earlier = [d for d in days if oldest <= d < today]
        return days[max(earlier)].last_price if earlier else None

    def prior_low(self, sku: str, today: date, *, include_today: bool = True) -> int | None:
        """Lowest price paid (after promotions) in the window's days, or None if none sold.

        ``include_today`` counts today's earlier prices too.
        """
        days = self._days.get(sku)
        if not days:
            return None
        oldest = today - timedelta(days=self.window)
        lows = [r.low_final for d, r in days.items() if oldest <= d < today or (include_today and d == today)]
        return min(lows) if lows else None
