"""Per-SKU daily price aggregates: this worker's view, kept in step with the database.

The worker's own decisions are folded in when they are decided (:meth:`observe`), and
persisted by the writer in the same transaction as the decisions
(:func:`upsert_daily_prices`); :meth:`PriceAggregates.refresh` re-reads the rows that
changed (any worker's), so all workers converge within one refresh interval.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from api.orm import SkuDailyPrices, utcnow
from api.services.raw_sql import RawSQL
from pricing.daily_prices import WINDOW_DAYS, DayPrices, PriceBook

__all__ = ["PriceAggregates", "upsert_daily_prices"]

#: Rows whose ``updated_at`` is this close to the last refresh are read again (clock
#: skew between workers, and commits that land after their timestamp).
OVERLAP = timedelta(seconds=5)


_COLUMNS = (
    SkuDailyPrices.sku, SkuDailyPrices.day, SkuDailyPrices.first_at, SkuDailyPrices.last_at,
    SkuDailyPrices.last_price_minor, SkuDailyPrices.low_minor, SkuDailyPrices.high_minor,
    SkuDailyPrices.low_final_minor, SkuDailyPrices.decisions,
)  # fmt: skip


def _row(r: Any) -> DayPrices:
    return DayPrices(r.sku, r.day, r.first_at, r.last_at, int(r.last_price_minor), int(r.low_minor),
                     int(r.high_minor), int(r.low_final_minor), int(r.decisions))  # fmt: skip


class PriceAggregates:
    """A thread-safe :class:`~pricing.daily_prices.PriceBook` synchronised with the database.

    Parameters
    ----------
    sessions : sessionmaker
        Read-only sessions.
    """

    def __init__(self, sessions: sessionmaker[Session], window: int = WINDOW_DAYS) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._book = PriceBook(window)
        self._since: datetime | None = None
        self._today: date | None = None

    def observe(self, sku: str, at: datetime, price_minor: int, final_minor: int) -> None:
        """Fold one of this worker's decisions in (before it is committed)."""
        with self._lock:
            self._book.observe(sku, at, price_minor, final_minor)

    def anchor(self, sku: str, today: date) -> int | None:
        """The SKU's anchor for ``today`` (close of its last earlier selling day)."""
        with self._lock:
            return self._book.anchor(sku, today)

    def anchors(self, skus: Iterable[str], today: date) -> dict[str, int | None]:
        """:meth:`anchor` of several SKUs under one lock."""
        with self._lock:
            return {sku: self._book.anchor(sku, today) for sku in skus}

    def prior_low(self, sku: str, today: date, *, include_today: bool = True) -> int | None:
        """Lowest price paid in the last 30 days (today's earlier prices included unless
        ``include_today`` is False)."""
        with self._lock:
            return self._book.prior_low(sku, today, include_today=include_today)

    def day(self, sku: str, day: date) -> DayPrices | None:
        """The aggregate row of ``sku`` on ``day`` as this worker knows it."""
        with self._lock:
            return self._book.day(sku, day)

    def refresh(self, now: datetime | None = None, *, full: bool = False) -> int:
        """Re-read rows changed since the last refresh (the whole window the first time,
        or with ``full``)."""
        now = now or utcnow()
        # Core rows, not ORM instances: under load every SKU's row of today changes
        # between two passes, and this runs in the worker beside its requests.
        query = select(*_COLUMNS)
        if self._since is None or full:
            query = query.where(SkuDailyPrices.day >= (now - timedelta(days=self._book.window + 1)).date())
        else:
            query = query.where(
                SkuDailyPrices.day >= (self._since - OVERLAP).date(),
                SkuDailyPrices.updated_at >= self._since - OVERLAP,
            )
        with self._sessions() as session:
            rows = [_row(r) for r in session.connection().execute(query)]
        with self._lock:
            self._book.merge(rows)
            if self._today != now.date():
                self._book.forget_before(now.date())
                self._today = now.date()
        self._since = now
        return len(rows)


_UPSERTS: dict[str, Any] = {}


def _upsert_statement(dialect: str) -> Any:
    """The batch upsert, built once per dialect (building it costs more than running it)."""
    statement = _UPSERTS.get(dialect)
    if statement is not None:
        return statement
    module: Any = postgresql if dialect == "postgresql" else sqlite
    least = func.least if dialect == "postgresql" else func.min
    greatest = func.greatest if dialect == "postgresql" else func.max
    table = SkuDailyPrices.__table__
    insert = module.insert(table)
    new = insert.excluded
    later = (new.last_at > table.c.last_at) | (
        (new.last_at == table.c.last_at) & (new.last_price_minor > table.c.last_price_minor)
    )
    statement = _UPSERTS[dialect] = insert.on_conflict_do_update(
        index_elements=["sku", "day"],
        set_={
            "first_at": least(table.c.first_at, new.first_at),
            "last_at": greatest(table.c.last_at, new.last_at),
            "last_price_minor": case((later, new.last_price_minor), else_=table.c.last_price_minor),
            "low_minor": least(table.c.low_minor, new.low_minor),
            "high_minor": greatest(table.c.high_minor, new.high_minor),
            "low_final_minor": least(table.c.low_final_minor, new.low_final_minor),
            "decisions": table.c.decisions + new.decisions,
            "updated_at": new.updated_at,
        },
    )
    return statement


_SQLITE_UPSERT = """INSERT INTO sku_daily_prices (sku, day, first_at, last_at, last_price_minor,
 low_minor, high_minor, low_final_minor, decisions, updated_at) VALUES {values}
ON CONFLICT (sku, day) DO UPDATE SET
 first_at = min(sku_daily_prices.first_at, excluded.first_at),
 last_at = max(sku_daily_prices.last_at, excluded.last_at),
 last_price_minor = CASE WHEN excluded.last_at > sku_daily_prices.last_at
   OR (excluded.last_at = sku_daily_prices.last_at
       AND excluded.last_price_minor > sku_daily_prices.last_price_minor)
   THEN excluded.last_price_minor ELSE sku_daily_prices.last_price_minor END,
 low_minor = min(sku_daily_prices.low_minor, excluded.low_minor),
 high_minor = max(sku_daily_prices.high_minor, excluded.high_minor),
 low_final_minor = min(sku_daily_prices.low_final_minor, excluded.low_final_minor),
 decisions = sku_daily_prices.decisions + excluded.decisions,
 updated_at = excluded.updated_at"""


def upsert_daily_prices(session: Session, rows: Sequence[DayPrices], now: datetime) -> None:
    """Fold a batch's per-(SKU, day) aggregates into ``sku_daily_prices`` (one statement).

    ``rows`` are this batch's own aggregates (``decisions`` = this batch's count); the
    stored row keeps the minimum, maximum, latest and the sum. Rows go in (SKU, day)
    order, the same lock order for every writer.

    On SQLite the statement is one multi-row ``INSERT ... ON CONFLICT`` on the driver
    (values as :class:`~api.services.raw_sql.RawSQL` stores them): SQLAlchemy's
    executemany and its per-value processing cost the group writer more than the upsert
    itself. PostgreSQL keeps SQLAlchemy's statement (psycopg pipelines the executemany).
    """
    if not rows:
        return
    ordered = sorted(rows, key=lambda r: (r.sku, r.day))
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        stamp = RawSQL("sqlite").timestamp
        changed = stamp(now)
        values = [v for r in ordered for v in (
            r.sku, r.day.isoformat(), stamp(r.first_at), stamp(r.last_at), r.last_price, r.low,
            r.high, r.low_final, r.decisions, changed)]  # fmt: skip
        mark = "(?,?,?,?,?,?,?,?,?,?)"
        cursor = connection.connection.cursor()
        try:
            for start in range(0, len(ordered), 400):  # 4,000 values a statement at most
                n = min(400, len(ordered) - start)
                cursor.execute(_SQLITE_UPSERT.format(values=",".join([mark] * n)),
                               values[start * 10 : (start + n) * 10])  # fmt: skip
        finally:
            cursor.close()
        return
    connection.execute(
        _upsert_statement(connection.dialect.name),
        [{"sku": r.sku, "day": r.day, "first_at": r.first_at, "last_at": r.last_at,
          "last_price_minor": r.last_price, "low_minor": r.low, "high_minor": r.high,
          "low_final_minor": r.low_final, "decisions": r.decisions, "updated_at": now}
         for r in ordered],
    )  # fmt: skip
