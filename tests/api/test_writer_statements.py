"""The group writer's driver-level statements (sticky read, daily price upsert, promotion
running totals) give what the SQLAlchemy statements they replaced gave, on SQLite and
PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

from api.hot.prices import upsert_daily_prices
from api.orm import Decision, Outcome, PromotionUsage, SkuDailyPrices
from api.security import Role
from api.services.quote_writes import _open_decisions, _promotion_totals
from api.services.raw_sql import RawSQL, table_columns
from pricing.daily_prices import DayPrices, PriceBook

T0 = datetime(2026, 12, 7, 10, 0, 0, 250000, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


def test_the_daily_upsert_folds_batches_as_the_price_book_does(catalog, sessions):
    served = [  # (sku, time, price, final): three batches, a tie in time, another zone
        [("TEA-1", T0, 1000, 900), ("TEA-2", T0, 499, 499)],
        [("TEA-1", T0 + timedelta(minutes=5), 950, 950),
         ("TEA-1", T0 - timedelta(hours=1), 1100, 1000)],
        [("TEA-1", (T0 + timedelta(minutes=5)).astimezone(PLUS_TWO), 990, 800),
         ("TEA-2", T0 + timedelta(days=1), 520, 520)],
    ]  # fmt: skip
    expected = PriceBook()
    for batch in served:
        book = PriceBook()
        for sku, at, price, final in batch:
            book.observe(sku, at, price, final)
            expected.observe(sku, at, price, final)
        rows = {(s, a.astimezone(UTC).date()) for s, a, _p, _f in batch}
        days = [r for s, d in sorted(rows) if (r := book.day(s, d)) is not None]
        with sessions() as session, session.begin():
            upsert_daily_prices(session, days, T0 + timedelta(hours=2))
    with sessions() as session:
        stored = {(r.sku, r.day): r for r in session.scalars(select(SkuDailyPrices))}
    assert len(stored) == 3
    for (sku, day), row in stored.items():
        want = expected.day(sku, day)
        assert want is not None
        got = DayPrices(sku, day, row.first_at, row.last_at, row.last_price_minor, row.low_minor,
                        row.high_minor, row.low_final_minor, row.decisions)  # fmt: skip
        assert got == want
        assert row.updated_at == T0 + timedelta(hours=2) and row.first_at.tzinfo is not None
    tea = stored["TEA-1", T0.date()]
    assert (tea.last_price_minor, tea.low_minor, tea.high_minor, tea.decisions) == (990, 950, 1100, 4)


def _decision(customer: str, sku: str, expires: datetime) -> dict[str, object]:
    return {"id": uuid.uuid4(), "quote_id": uuid.uuid4(), "line_no": 0, "created_at": T0,
            "expires_at": expires, "customer_id": customer, "segment": "default", "sku": sku,
            "quantity": 1, "currency": "USD", "list_price_minor": 1000, "price_minor": 1000,
            "unit_cost_minor": 400, "propensity": 1.0, "personalized": False, "policy": "list",
            "context": {}, "guardrail_trail": {}}  # fmt: skip


def test_the_sticky_read_sees_live_decisions_without_an_outcome_only(catalog, sessions):
    later = T0 + timedelta(minutes=15)
    rows = [
        _decision("a", "TEA-1", later),  # live
        _decision("a", "TEA-2", T0 - timedelta(seconds=1)),  # expired
        _decision("b", "TEA-1", later.astimezone(PLUS_TWO)),  # live, stored in UTC
        _decision("c", "TEA-1", later),  # has an outcome
        _decision("z", "TEA-1", later),  # another customer
        *(_decision(f"many-{i}", "TEA-2", later) for i in range(600)),  # over one chunk
    ]
    with sessions() as session, session.begin():
        RawSQL.of(session).insert_rows(session, "decisions", table_columns(Decision.__table__), rows)
        session.add(Outcome(id=uuid.uuid4(), decision_id=rows[3]["id"], converted=False, quantity=0,
                            revenue_minor=0, currency="USD", occurred_at=T0))  # fmt: skip
    customers = ["a", "b", "c", "nobody", *(f"many-{i}" for i in range(600))]
    with sessions() as session, session.begin():
        got = _open_decisions(session, RawSQL.of(session), customers, T0)
    assert ("a", "TEA-1", later) in got and ("b", "TEA-1", later) in got
    assert all(stamp.tzinfo is not None for _c, _s, stamp in got)
    assert {c for c, _s, _e in got} == {"a", "b", *(f"many-{i}" for i in range(600))}
    assert len(got) == 602


@dataclass
class _Offer:
    key: str
    reserve_minor: int


@dataclass
class _Job:
    offers: list[_Offer]
    eligible: dict[str, int] = field(default_factory=dict)


def test_promotion_totals_add_up_and_keep_the_first_eligible_time(catalog, sessions):
    response = catalog.put("/v1/promotions/SPRING", Role.MERCHANDISER,
                           json={"name": "Spring", "type": "percent_off", "percent_off": "10"})  # fmt: skip
    assert response.status_code == 201, response.text
    with sessions() as session, session.begin():
        _promotion_totals(session, [_Job([_Offer("SPRING", 0)])], T0)  # type: ignore[list-item]
    with sessions() as session:
        usage = session.get(PromotionUsage, "SPRING")
        assert usage is not None and usage.first_eligible_at is None and usage.open_offers == 1
    jobs = [_Job([_Offer("SPRING", 120)], {"SPRING": 1}), _Job([_Offer("SPRING", 80)], {"SPRING": 2})]
    with sessions() as session, session.begin():
        _promotion_totals(session, jobs, T0.astimezone(PLUS_TWO))  # type: ignore[arg-type]
    with sessions() as session, session.begin():
        _promotion_totals(session, [_Job([], {"SPRING": 1})], T0 + timedelta(hours=1))  # type: ignore[list-item]
    with sessions() as session:
        usage = session.get(PromotionUsage, "SPRING")
    assert usage is not None
    assert (usage.held_minor, usage.open_offers, usage.eligible_visits) == (200, 3, 4)
    assert usage.first_eligible_at == T0
