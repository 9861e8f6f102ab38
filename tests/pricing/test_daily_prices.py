"""Running daily price aggregates, and the day caps they anchor across several workers."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.daily_prices import DayPrices, PriceBook
from pricing.guardrails import GuardrailSet, ProductFacts, Rule
from pricing.policy import LineContext, ThompsonPricePolicy
from tests.factories import synthetic_posterior

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_anchor_is_the_close_of_the_last_earlier_day_that_sold():
    book = PriceBook()
    book.observe("A", T0 + timedelta(hours=9), 1000, 1000)
    book.observe("A", T0 + timedelta(hours=23, minutes=59, seconds=59), 1100, 1100)
    # Midnight UTC: the last price before it closes the day; the first price after it
    # belongs to the next day and does not move that day's anchor.
    book.observe("A", T0 + timedelta(days=1), 900, 900)
    assert book.anchor("A", (T0 + timedelta(days=1)).date()) == 1100
    assert book.anchor("A", T0.date()) is None
    # A day with no sales in between: the anchor is still the last selling day's close.
    assert book.anchor("A", (T0 + timedelta(days=3)).date()) == 900
    # Older than the window: forgotten.
    assert book.anchor("A", (T0 + timedelta(days=40)).date()) is None


def test_prior_low_covers_thirty_days_of_prices_and_promotions():
    book = PriceBook()
    for day in range(35):
        at = T0 + timedelta(days=day, hours=12)
        if day == 10:
            continue  # a day with no sales
        price = 1000 - (5 if day == 3 else 0)
        final = price - (50 if day == 20 else 0)  # a promotion on day 20
        book.observe("A", at, price, final)
    today = (T0 + timedelta(days=34)).date()
    # Day 3 (995) is 31 days back: outside the window; day 20's 950 paid is inside.
    assert book.prior_low("A", today) == 950
    assert book.prior_low("A", (T0 + timedelta(days=51)).date()) == 1000
    assert book.prior_low("A", (T0 + timedelta(days=33)).date()) == 950
    assert book.prior_low("B", today) is None


@given(st.lists(st.tuples(st.integers(0, 86_399), st.integers(100, 2000), st.integers(0, 50)),
                min_size=1, max_size=30),
       st.randoms(use_true_random=False))  # fmt: skip
def test_merging_views_in_any_order_and_repeatedly_gives_the_same_row(events, random):
    rows = [
        DayPrices("A", T0.date(), T0 + timedelta(seconds=s), T0 + timedelta(seconds=s), p,
                  p, p, p - d, 1)
        for s, p, d in events
    ]  # fmt: skip
    one, other = PriceBook(), PriceBook()
    one.merge(rows)
    shuffled = rows[:]
    random.shuffle(shuffled)
    other.merge(shuffled + shuffled[: len(shuffled) // 2])
    a, b = one.day("A", T0.date()), other.day("A", T0.date())
    assert a is not None and b is not None
    assert (a.first_at, a.last_at, a.last_price, a.low, a.high, a.low_final) == (
        b.first_at, b.last_at, b.last_price, b.low, b.high, b.low_final,
    )  # fmt: skip
    assert a.low == min(p for _, p, _ in events) and a.high == max(p for _, p, _ in events)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(300, 3000),
    st.floats(0.02, 0.4),
    st.floats(1.0, 1.3),
    st.integers(0, 2**31 - 1),
)
def test_two_workers_never_break_max_change_or_segment_gap_between_them(
    yesterday_close, max_change, gap, seed
):
    """Two workers price one SKU for a day, each from its own state and generator.

    Neither sees the other's prices (the worst case: no refresh lands during the day);
    both read the same anchor, yesterday's close, from the shared daily rows. Every
    price stays within max_change of the anchor and any two are within the gap.
    """
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.5, max_increase=0.5,
                                     max_change=max_change, segment_gap=gap),))  # fmt: skip
    list_price, cost = 1000, 300
    shared = [DayPrices("TEA-1", date(2026, 2, 28), T0 - timedelta(hours=1),
                        T0 - timedelta(minutes=1), yesterday_close, yesterday_close,
                        yesterday_close, yesterday_close, 7)]  # fmt: skip
    workers = []
    for w in range(2):
        book = PriceBook()
        book.merge(shared)
        posterior = synthetic_posterior(n_draws=40, seed=(seed + w) % 1000, spread=1.5)
        policy = ThompsonPricePolicy(lambda p=posterior: ("v1", p), lambda: rules,
                                     epsilon=0.2, seed=seed + w)  # fmt: skip
        workers.append((book, policy))
    served = []
    for t, (book, policy) in zip(range(40), itertools.cycle(workers)):
        at = T0 + timedelta(minutes=10 * t)
        anchor = book.anchor("TEA-1", at.date())
        assert anchor == yesterday_close
        segment = ("default", "loyalty")[t % 2]
        decision = policy.decide(LineContext(segment, "TEA-1", "tea", "USD", list_price, cost,
                                             anchor_price_minor=anchor))  # fmt: skip
        book.observe("TEA-1", at, decision.price_minor, decision.price_minor)
        if decision.fallback:  # the caps leave no price inside the static bounds
            assert "no_price_within_period_caps" in decision.reasons
            continue
        served.append(decision.price_minor)
    facts = ProductFacts("TEA-1", "tea", list_price, cost, yesterday_close)
    low, high, _ = rules.bounds(facts)
    for price in served:
        assert abs(price - yesterday_close) <= yesterday_close * max_change + 1e-6
        assert low <= price <= high
    if served:
        assert max(served) <= min(served) * gap + 1e-6
