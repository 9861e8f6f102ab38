"""Promotion economics, eligibility, joint (price, promotion) Thompson sampling and LP pacing."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from pricing.guardrails import GuardrailSet, Rule
from pricing.pacing import spend_rate
from pricing.policy import LineContext, ThompsonPricePolicy
from pricing.promotions import Offer, Promotion
from tests.factories import synthetic_posterior

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_discounts_round_half_up_and_never_exceed_the_price():
    ten = Promotion("P", "percent_off", percent_off=Decimal("12.5"))
    assert ten.discount_minor(1000) == 125
    assert ten.discount_minor(999) == 125  # 124.875 -> 125
    assert ten.discount_minor(4) == 1  # 0.5 -> 1 (half up)
    flat = Promotion("F", "amount_off", amount_off_minor=300, currency="USD")
    assert flat.discount_minor(1000) == 300 and flat.discount_minor(200) == 200
    ship = Promotion("S", "free_shipping", shipping_cost_minor=495, currency="USD")
    assert ship.discount_minor(1000) == 0 and ship.cost_minor == 495
    assert list(ten.discounts(np.array([1000, 2000]))) == [125, 250]
    with pytest.raises(ValueError):
        Promotion("X", "percent_off", percent_off=Decimal(101))
    with pytest.raises(ValueError):
        Promotion("X", "bogus")


def test_promotions_round_trip_through_their_stored_form():
    p = Promotion("P", "amount_off", amount_off_minor=150, currency="EUR", segments=frozenset({"a"}),
                  starts_at=NOW, ends_at=NOW + timedelta(days=3), budget_minor=10_000,
                  per_customer_limit=2, per_customer_period="day", exclusive=False)  # fmt: skip
    assert Promotion.from_dict(p.to_dict()) == p
    assert p.paced and p.capped


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        ({}, {}, None),
        ({"active": False}, {}, "inactive"),
        ({"starts_at": NOW + timedelta(seconds=1)}, {}, "not_started"),
        ({"ends_at": NOW}, {}, "ended"),
        ({"segments": frozenset({"vip"})}, {}, "segment"),
        ({"segments": frozenset({"vip"})}, {"segment": "vip"}, None),
        ({"skus": frozenset({"B"})}, {}, "product"),
        ({"categories": frozenset({"tea"})}, {}, None),
        ({"currency": "EUR"}, {}, "currency"),
        ({"channels": frozenset({"app"})}, {}, "channel"),
        ({"channels": frozenset({"app"})}, {"channel": "app"}, None),
        ({"min_cart_value_minor": 1001}, {}, "min_cart_value"),
    ],
)
def test_eligibility_names_the_first_reason(change, line, reason):
    p = replace(Promotion("P", "percent_off", percent_off=Decimal(10)), **change)
    args = {"segment": "default", "sku": "A", "category": "tea", "currency": "USD",
            "cart_value_minor": 1000, "channel": None, "now": NOW} | line  # fmt: skip
    assert p.ineligibility(**args) == reason


def _line(offers, *, quantity=1):
    return LineContext(
        "default", "TEA-1", "tea", "USD", 1000, 400, quantity=quantity, offers=offers
    )


def _policy(posterior, n_prices=6, seed=0, rules=None):
    rules = rules or GuardrailSet((Rule("global", None, max_discount=0.2, max_increase=0.2),))
    return ThompsonPricePolicy(
        lambda: ("v", posterior), lambda: rules, n_prices=n_prices, seed=seed
    )


def _posterior(lift=0.6):
    post = synthetic_posterior(n_draws=100, spread=0.4)
    return replace(post, g=np.full((post.n_draws, 1), lift), _index={})


def _frequencies_match(policy, line, n=6000):
    seen = Counter()
    logged = {}
    for _ in range(n):
        d = policy.decide(line)
        key = (d.price_minor, d.promotion)
        seen[key] += 1
        logged.setdefault(key, d.propensity)
        assert logged[key] == pytest.approx(d.propensity)  # same context, same propensity
    for key, count in seen.items():
        p = logged[key]
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3, (key, count / n, p)
    return seen, logged


def test_joint_propensities_are_exact_by_monte_carlo():
    policy = _policy(_posterior())
    offer = Offer(Promotion("promo", "percent_off", percent_off=Decimal(10)))
    seen, logged = _frequencies_match(policy, _line((offer,)))
    assert any(k[1] == "promo" for k in seen) and any(k[1] is None for k in seen)
    candidates = policy.decide(_line((offer,))).candidates
    assert candidates == 12  # 6 prices without and 6 with the promotion
    # Every candidate had the ε/n floor, so the logged propensities cover all actions.
    assert min(logged.values()) >= policy.floor / candidates - 1e-12


def test_paced_propensities_are_exact_by_monte_carlo():
    policy = _policy(_posterior(lift=1.5))
    offer = Offer(Promotion("promo", "percent_off", percent_off=Decimal(20), budget_minor=10**6,
                            ends_at=NOW), max_reserve_minor=None, pacing_rate_minor=20.0)  # fmt: skip
    seen, _ = _frequencies_match(policy, _line((offer,)))
    decisions = [policy.decide(_line((offer,))) for _ in range(200)]
    assert any("lp_pacing" in d.reasons for d in decisions)
    # "lp_pacing" says how an offer was paced: a line served without the promotion never says it.
    assert all("lp_pacing" not in d.reasons for d in decisions if d.promotion is None)
    assert any(d.promotion is None for d in decisions)
    share = sum(c for k, c in seen.items() if k[1] == "promo") / sum(seen.values())
    assert 0.05 < share < 0.95  # the rate binds: the LP mixes promotion and no promotion


def test_offers_only_at_prices_whose_hold_fits_the_free_budget():
    policy = _policy(_posterior(lift=3.0))
    offer = Offer(Promotion("promo", "amount_off", amount_off_minor=150, currency="USD"),
                  max_reserve_minor=2 * 150 + 10)  # fmt: skip
    for _ in range(200):
        d = policy.decide(_line((offer,), quantity=2))
        if d.promotion:
            assert d.reserve_minor == 300 and d.discount_minor == 150
    tight = replace(offer, max_reserve_minor=299)
    assert all(policy.decide(_line((tight,), quantity=2)).promotion is None for _ in range(100))


def test_joint_choices_stay_inside_the_guardrail_ladder():
    rules = GuardrailSet((Rule("global", None, max_discount=0.1, max_increase=0.05),))
    policy = _policy(_posterior(lift=2.0), rules=rules)
    offer = Offer(Promotion("promo", "percent_off", percent_off=Decimal(30)))
    for _ in range(300):
        d = policy.decide(_line((offer,)))
        assert 900 <= d.price_minor <= 1050  # guardrails bound the price; the promotion is on top


def _campaign(paced: bool, seed: int, horizon: int = 1500):
    """Spend path of a budgeted campaign with conversions from the posterior mean."""
    post = _posterior(lift=1.0)
    policy = _policy(post, n_prices=4, seed=seed)
    promotion = Promotion("promo", "percent_off", percent_off=Decimal(20), currency="USD",
                          budget_minor=1, ends_at=NOW)  # fmt: skip
    rng = np.random.default_rng(seed)
    budget = 0.25 * horizon * 0.2 * 1000 * 0.5  # a quarter of what unpaced TS would give away
    spent = 0.0
    path = []
    for t in range(horizon):
        remaining = budget - spent
        rate = spend_rate(remaining, horizon - t) if paced else None
        offer = Offer(promotion, max_reserve_minor=int(remaining), pacing_rate_minor=rate)
        d = policy.decide(_line((offer,)))
        ratio = (d.price_minor - d.discount_minor) / 1000
        p = post.conversion_probability("default", "TEA-1", ratio, promotion=d.promotion)
        if rng.random() < float(np.mean(p)) and d.promotion:
            spent += d.discount_minor
        path.append(spent)
    return np.array(path) / budget


@pytest.mark.parametrize("seed", [1, 2])
def test_lp_pacing_spends_the_budget_evenly_to_the_horizon(seed):
    paced = _campaign(True, seed)
    assert paced[-1] <= 1.0  # never over budget
    assert paced[-1] >= 0.85  # little left over
    assert 0.3 <= paced[len(paced) // 2] <= 0.7  # about half by half-time
    unpaced = _campaign(False, seed)
    assert unpaced[len(unpaced) // 2] >= 0.95  # without pacing the budget is gone early


@pytest.mark.slow
def test_the_model_learns_promotion_lift_and_context_effects():
    """Cells with a promotion and a declared context feature: both effects are recovered."""
    from pricing.cells import CellRecord, Cells
    from pricing.context import ContextSchema
    from pricing.demand import DemandModel

    schema = ContextSchema.from_dict(
        {"features": [{"name": "device", "kind": "categorical", "levels": ["desktop", "mobile"]}]}
    )
    rng = np.random.default_rng(5)
    truth_lift, truth_mobile, elasticity = 0.5, 0.8, 1.8
    records = []
    for s, seg_effect in (("a", 0.2), ("b", -0.2)):
        for j, sku_effect in enumerate((-1.0, -0.5, 0.0)):
            for ratio in (0.8, 0.9, 1.0, 1.1):
                for promo in ("", "P"):
                    for device in ("desktop", "mobile"):
                        x = schema.encode({"device": device})
                        eta = (seg_effect + sku_effect - elasticity * np.log(ratio)
                               + truth_lift * (promo == "P") + truth_mobile * x[0])  # fmt: skip
                        n = 400
                        y = int(rng.binomial(n, 1 / (1 + np.exp(-eta))))
                        records.append(CellRecord(s, f"S{j}", "tea", ratio, promo, n, y, tuple(x)))
    cells = Cells.from_records(records, schema.columns)
    # No gate here (recovery is the point): one short run, no retries.
    model = DemandModel(sampler_config={"draws": 400, "tune": 400, "chains": 2, "method": "nuts",
                                        "retry_target_accept": None, "max_draws": 0})  # fmt: skip
    model.fit(cells)
    post = model.posterior(400, meta={"context_schema": schema.to_dict()})
    g = post.g[:, 0]
    d = post.d[:, 0]
    assert np.quantile(g, 0.02) < truth_lift < np.quantile(g, 0.98)
    assert np.quantile(d, 0.02) < truth_mobile < np.quantile(d, 0.98)
    offset = post.context_offset({"device": "mobile"})
    assert offset is not None and np.allclose(offset, d)
    assert post.context_offset({"device": "desktop"}) is None
    restored = type(post).from_bytes(post.to_bytes())
    assert restored.context_columns == ("device=mobile",)
    assert np.allclose(restored.d[:, 0], d, atol=1e-6)


@pytest.mark.parametrize("percent", ["10", "12.5", "33.333", "99.999", "100", "0.001"])
def test_vectorised_discounts_equal_the_decimal_definition(percent):
    promotion = Promotion("P", "percent_off", percent_off=Decimal(percent))
    prices = np.random.default_rng(0).integers(1, 10**7, size=2000)
    expected = [promotion.discount_minor(int(p)) for p in prices]
    assert promotion.discounts(prices).tolist() == expected


def test_an_unseen_promotion_draws_its_lift_from_the_prior():
    post = replace(
        synthetic_posterior(n_draws=400), meta={"version": "v", "promotion_prior": [0.1, 0.5]}
    )
    lift = post.promotion_lift("NEW")
    assert lift.std() == pytest.approx(0.5, rel=0.15) and lift.mean() == pytest.approx(
        0.1, abs=0.08
    )
    assert np.array_equal(lift, post.promotion_lift("NEW"))  # the same draws every time
    assert not np.array_equal(lift, post.promotion_lift("OTHER"))


def _ladder_of(policy, line):
    policy.decide(line)  # builds (or finds) the line's ladder
    (ladder,) = policy._ladders.values()  # one product in these tests
    return ladder


def test_joint_candidates_kept_per_line_are_those_a_fresh_policy_builds():
    """The candidates are kept per ladder, quantity, unit cost and offers; whatever changes
    between two quotes (a budget running low, a promotion's new version, the quantity), the
    kept ones equal what a policy that never saw the line builds."""
    post = _posterior()
    policy = _policy(post)
    ten = Promotion("promo", "percent_off", percent_off=Decimal(10))
    twenty = replace(ten, version=2, percent_off=Decimal(20))
    amount = Promotion("cash", "amount_off", amount_off_minor=150, currency="USD")
    ship = Promotion("ship", "free_shipping", shipping_cost_minor=90, currency="USD")
    lines = [
        _line((Offer(ten),)),
        _line((Offer(ten, max_reserve_minor=10**9),)),  # a budget that covers every price
        _line((Offer(ten, max_reserve_minor=110),)),  # ... that rules the higher prices out
        _line((Offer(twenty),)),  # the same key, a new version
        _line((Offer(ten),), quantity=3),
        _line((Offer(amount, max_reserve_minor=310),), quantity=2),
        _line((Offer(amount, max_reserve_minor=299),), quantity=2),
        _line((Offer(ten), Offer(ship, pacing_rate_minor=5.0))),
        _line(()),
    ]
    for _round in range(2):
        for line in lines:
            kept = policy._joint_candidates(line, _ladder_of(policy, line))
            fresh_policy = _policy(post)
            fresh = fresh_policy._joint_candidates(line, _ladder_of(fresh_policy, line))
            for name in ("prices", "discounts", "option", "cost", "margin"):
                np.testing.assert_array_equal(getattr(kept, name), getattr(fresh, name), err_msg=name)
            assert kept.signature == fresh.signature and kept.paced == fresh.paced
    budgets = [policy._joint_candidates(x, _ladder_of(policy, x)) for x in lines[:3]]
    assert budgets[0] is budgets[1]  # a budget covering every price is no budget
    assert len(budgets[2].prices) < len(budgets[0].prices)
    with pytest.raises(ValueError):
        budgets[0].prices[0] = 1  # shared by the line's quotes: read-only
