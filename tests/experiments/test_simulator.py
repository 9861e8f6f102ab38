"""experiments.simulator: determinism, serialisation, oracle, demand and profit accounting."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.simulator import (
    ContextFeatureSpec,
    Market,
    PromotionSpec,
    checkpoints,
    stream_digest,
    summarize,
)

ROOT = Path(__file__).resolve().parents[2]


def small_market(**overrides: Any) -> Market:
    """A hand-made market: 2 segments, 2 SKUs, one promotion of each kind."""
    fields: dict[str, Any] = {
        "segments": ("new", "loyal"),
        "skus": ("A", "B"),
        "categories": ("tea",),
        "sku_category": [0, 0],
        "list_price_minor": [1000, 2000],
        "unit_cost_minor": [400, 900],
        "segment_mix": [0.5, 0.5],
        "sku_mix": [0.25, 0.75],
        "a_seg": [-0.2, 0.2],
        "a_sku": [-1.5, -1.0],
        "log_e": [[np.log(2.0)], [np.log(1.2)]],
        "promotions": (
            PromotionSpec("ten", "percent_off", percent_off=10.0),
            PromotionSpec("ship", "free_shipping", shipping_cost_minor=300),
            PromotionSpec("cut", "amount_off", amount_off_minor=150),
        ),
        "lift": [0.3, 0.5, 0.1],
        "segment_lift": np.zeros((2, 3)),
        "ladder": (0.8, 0.9, 1.0, 1.1, 1.2),
    }
    fields.update(overrides)
    return Market(**fields)


def sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------- determinism
def test_same_seed_gives_the_same_market_and_streams():
    a = Market.random(4, 6, 2, 3, seed=11)
    b = Market.random(4, 6, 2, 3, seed=11)
    assert a == b
    np.testing.assert_array_equal(a.expected_profit_table, b.expected_profit_table)
    for x, y in zip(a.visitors(1000, seed=5), b.visitors(1000, seed=5), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.purchase_draws(1000, seed=5), b.purchase_draws(1000, seed=5))


def test_other_seeds_give_other_markets_and_streams():
    market = Market.random(4, 6, 2, 3, seed=11)
    assert market != Market.random(4, 6, 2, 3, seed=12)
    s1, j1 = market.visitors(1000, seed=5)
    s2, j2 = market.visitors(1000, seed=6)
    assert not (np.array_equal(s1, s2) and np.array_equal(j1, j2))
    assert not np.array_equal(market.purchase_draws(1000, 5), market.purchase_draws(1000, 6))
    # Visitors and purchase draws of one seed come from independent streams.
    u = market.purchase_draws(1000, 5)
    assert abs(np.corrcoef(u, s1)[0, 1]) < 0.1


def test_stream_follows_the_arrival_mix():
    market = Market.random(3, 4, 1, 1, seed=3)
    segment, sku = market.visitors(60_000, seed=1)
    np.testing.assert_allclose(
        np.bincount(segment, minlength=3) / 60_000, market.segment_mix, atol=0.01
    )
    np.testing.assert_allclose(np.bincount(sku, minlength=4) / 60_000, market.sku_mix, atol=0.01)


def test_stream_digest_tells_streams_apart():
    market = Market.random(2, 3, 1, 1, seed=3)
    s, j = market.visitors(100, seed=1)
    u = market.purchase_draws(100, seed=1)
    assert stream_digest(s, j, u) == stream_digest(s.copy(), j.copy(), u.copy())
    assert stream_digest(s, j, u) != stream_digest(s, j, market.purchase_draws(100, seed=2))


# ---------------------------------------------------------------------- serialisation
def test_from_dict_of_to_dict_is_the_same_market_through_json():
    market = Market.random(5, 10, 3, 4, seed=2, segment_lift_sd=0.2)
    rebuilt = Market.from_dict(json.loads(json.dumps(market.to_dict())))
    assert rebuilt == market
    np.testing.assert_array_equal(rebuilt.expected_profit_table, market.expected_profit_table)
    np.testing.assert_array_equal(rebuilt.oracle_actions, market.oracle_actions)
    assert rebuilt.promotions == market.promotions


def test_from_dict_rejects_an_unknown_format():
    data = small_market().to_dict() | {"format": 99}
    with pytest.raises(ValueError, match="format"):
        Market.from_dict(data)


def test_the_simulator_imports_without_the_engine_scipy_or_pymc():
    code = (
        "import sys; import experiments.simulator; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pricing', 'scipy', 'pymc', 'pytensor')]; "
        "print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------------- candidate set and oracle
def test_candidate_actions_are_the_ladder_times_no_promotion_and_each_promotion():
    market = small_market()
    assert market.n_actions == 5 * 4
    np.testing.assert_array_equal(market.prices[1], [1600, 1800, 2000, 2200, 2400])
    assert market.action(1, 0) == (1600, -1)
    assert market.action(1, 5 + 2) == (2000, 0)
    assert market.action(1, 3 * 5 + 4) == (2400, 2)
    for a in range(market.n_actions):
        price, promotion = market.action(0, a)
        assert market.action_index(0, price, promotion) == a
    with pytest.raises(ValueError, match="not a candidate"):
        market.action_index(0, 1234)
    assert market.list_action(1) == 2


def test_oracle_is_the_argmax_of_expected_profit_by_brute_force():
    market = Market.random(3, 5, 2, 3, seed=4, segment_lift_sd=0.3)
    for s in range(market.n_segments):
        for j in range(market.n_skus):
            values = []
            for a in range(market.n_actions):
                price, k = market.action(j, a)
                # Independent path: the closed form, term by term.
                promo = market.promotions[k] if k >= 0 else None
                discount = promo.discount_minor(price) if promo else 0
                cost = promo.cost_minor if promo else 0
                eta = (
                    market.a_seg[s]
                    + market.a_sku[j]
                    - np.exp(market.log_e[s, market.sku_category[j]])
                    * np.log((price - discount) / market.list_price_minor[j])
                    + (market.lift[k] + market.segment_lift[s, k] if promo else 0.0)
                )
                margin = price - discount - market.unit_cost_minor[j] - cost
                values.append(sigmoid(eta) * margin)
                assert float(market.expected_profit(s, j, a)) == pytest.approx(
                    values[-1], rel=1e-12
                )
                assert float(market.expected_profit_at(s, j, price, k)) == pytest.approx(
                    values[-1], rel=1e-12
                )
            best = int(np.argmax(values))
            assert market.oracle_action(s, j) == best
            assert market.oracle_expected_profit(s, j) == pytest.approx(max(values), rel=1e-12)


def test_random_market_has_the_documented_ranges():
    market = Market.random(20, 50, 4, 3, seed=9)
    at_list = market.probability_table[:, np.arange(50), [market.list_action(j) for j in range(50)]]
    assert at_list.min() > 0.05 and at_list.max() < 0.45
    assert 0.10 < np.median(at_list) < 0.30
    e = np.exp(market.log_e)
    assert e.min() >= 1.0 - 1e-12 and e.max() <= 3.0 + 1e-12
    assert (market.lift >= 0).all() and (market.lift <= 0.6).all()
    assert (market.list_price_minor % 100 == 0).all()
    assert [p.kind for p in market.promotions] == ["percent_off", "free_shipping", "amount_off"]
    assert (market.unit_cost_minor < market.list_price_minor).all()


# ---------------------------------------------------------------------- demand
def test_conversion_probability_follows_the_model_form():
    market = small_market()
    # Segment "loyal", SKU B, price 2200 with 10 % off: pays 1980 of a 2000 list price.
    p = float(market.conversion_probability(1, 1, 2200, 0))
    eta = 0.2 - 1.0 - 1.2 * np.log(1980 / 2000) + 0.3
    assert p == pytest.approx(sigmoid(eta), rel=1e-12)
    # Vectorised over visitors, and lower at a higher price.
    probs = market.conversion_probability([0, 1], [0, 1], [1000, 1000], [-1, -1])
    assert probs.shape == (2,)
    assert float(market.conversion_probability(0, 0, 1200)) < float(
        market.conversion_probability(0, 0, 1000)
    )


def test_empirical_conversion_frequency_matches_the_probability():
    market = Market.random(3, 4, 2, 2, seed=8)
    n = 200_000
    segment, sku = market.visitors(n, seed=21)
    u = market.purchase_draws(n, seed=21)
    action = np.random.default_rng(0).integers(market.n_actions, size=n)
    converted, _ = market.play(segment, sku, action, u)
    p = market.probability_table[segment, sku, action]
    # Overall, and in the busiest (segment, SKU, action) cell.
    z = (converted.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4
    key = (segment * market.n_skus + sku) * market.n_actions + action
    busiest = np.bincount(key).argmax()
    cell = key == busiest
    q = p[cell][0]
    z_cell = (converted[cell].mean() - q) / np.sqrt(q * (1 - q) / cell.sum())
    assert abs(z_cell) < 4


def test_same_draws_same_outcome_where_actions_coincide():
    market = Market.random(2, 3, 1, 2, seed=5)
    segment, sku = market.visitors(500, seed=1)
    u = market.purchase_draws(500, seed=1)
    a = market.oracle_actions[segment, sku]
    b = a.copy()
    b[::2] = 0
    ca, pa = market.play(segment, sku, a, u)
    cb, pb = market.play(segment, sku, b, u)
    same = a == b
    np.testing.assert_array_equal(ca[same], cb[same])
    np.testing.assert_array_equal(pa[same], pb[same])


# ---------------------------------------------------------------------- profit accounting
def test_profit_of_each_promotion_kind():
    market = small_market()
    # No promotion: price - unit cost on a purchase.
    assert int(market.profit(0, 1100, -1, True)) == 1100 - 400
    # 10 % off 1100 = 110: price - discount - cost.
    assert int(market.profit(0, 1100, 0, True)) == 1100 - 110 - 400
    # Free shipping: price - cost - shipping on a purchase...
    assert int(market.profit(0, 1100, 1, True)) == 1100 - 400 - 300
    # ...and nothing at all without one (shipping is borne only on a purchase).
    assert int(market.profit(0, 1100, 1, False)) == 0
    # Amount off 150.
    assert int(market.profit(1, 2000, 2, True)) == 2000 - 150 - 900
    # A purchase can lose money: cheap price plus shipping.
    assert int(market.profit(0, 800, 1, True)) == 800 - 400 - 300
    assert int(market.profit(0, 600, 1, True)) == -100
    np.testing.assert_array_equal(
        market.profit([0, 0, 1], [1000, 1000, 2000], [1, 1, -1], [True, False, True]),
        [300, 0, 1100],
    )


def test_play_charges_shipping_only_to_buyers():
    market = small_market()
    action = market.action_index(0, 1000, 1)  # free shipping at list price
    converted, profit = market.play([0, 0], [0, 0], [action, action], [0.0, 0.999999])
    assert converted.tolist() == [True, False]
    assert profit.tolist() == [1000 - 400 - 300, 0]
    p = float(market.probability_table[0, 0, action])
    assert float(market.expected_profit(0, 0, action)) == pytest.approx(p * 300)


def test_percent_discounts_round_half_up_like_the_engine():
    from pricing.promotions import Promotion

    for percent in (10.0, 12.5, 15.0, 33.33, 50.0, 100.0):
        ours = PromotionSpec("p", "percent_off", percent_off=percent)
        engine = Promotion("p", "percent_off", percent_off=Decimal(str(percent)))
        prices = np.arange(1, 3000, 7, dtype=np.int64)
        expected = [engine.discount_minor(int(p)) for p in prices]
        np.testing.assert_array_equal(ours.discounts(prices), expected)
    assert PromotionSpec("p", "percent_off", percent_off=10.0).discount_minor(1005) == 101
    assert PromotionSpec("c", "amount_off", amount_off_minor=500).discount_minor(300) == 300


def test_invalid_markets_are_rejected():
    with pytest.raises(ValueError, match="at or below zero"):
        small_market(promotions=(PromotionSpec("big", "amount_off", amount_off_minor=800),),
                     lift=[0.1], segment_lift=np.zeros((2, 1)))  # fmt: skip
    with pytest.raises(ValueError, match="strictly increasing"):
        small_market(ladder=(1.0, 0.9))
    with pytest.raises(ValueError, match="sum to 1"):
        small_market(segment_mix=[0.5, 0.6])
    with pytest.raises(ValueError, match="shape"):
        small_market(a_sku=[0.0])
    with pytest.raises(ValueError, match="2 decimals"):
        PromotionSpec("p", "percent_off", percent_off=12.345)


# ---------------------------------------------------------------------- scoring
def test_summarize_totals_and_curves_agree():
    rng = np.random.default_rng(0)
    n = 1000
    oracle_e = rng.uniform(1, 2, n)
    expected = oracle_e - rng.uniform(0, 1, n)
    oracle_r = rng.integers(0, 300, n).astype(float)
    realized = rng.integers(0, 300, n).astype(float)
    out = summarize(expected, oracle_e, realized, oracle_r, n_points=50)
    assert out["t"] == checkpoints(n, 50).tolist() and out["t"][-1] == n and len(out["t"]) == 50
    assert out["cum_profit"][-1] == pytest.approx(realized.sum())
    assert out["cum_regret"][-1] == pytest.approx(oracle_r.sum() - realized.sum())
    assert out["cum_expected_regret"][-1] == pytest.approx(oracle_e.sum() - expected.sum())
    assert out["late_expected_profit"] == pytest.approx(expected[750:].sum())
    assert out["cum_oracle_expected_profit"][-1] == pytest.approx(oracle_e.sum())
    json.dumps(out)  # serialisable
    with pytest.raises(ValueError):
        summarize(expected[:10], oracle_e, realized, oracle_r)


# ---------------------------------------------------------------------- context features
DEVICE = ContextFeatureSpec("device", ("desktop", "mobile"), (0.6, 0.4), (0.0, -0.8))
RETURNING = ContextFeatureSpec("returning", ("no", "yes", "vip"), (0.5, 0.3, 0.2), (0.0, 0.5, 1.5))


def test_context_offset_adds_the_levels_effects_in_mixed_radix_order():
    market = small_market(context_features=(DEVICE, RETURNING))
    assert market.n_contexts == 6
    # Context 4 = device level 1 (mobile), returning level 1 (yes): the first feature is slowest.
    assert market.context_values(4) == {"device": "mobile", "returning": "yes"}
    assert market.context_offset[4] == pytest.approx(-0.8 + 0.5)
    assert market.context_mix[4] == pytest.approx(0.4 * 0.3)
    assert market.context_mix.sum() == pytest.approx(1.0)
    assert market.context_offset[0] == 0.0 and market.context_values(0) == {
        "device": "desktop",
        "returning": "no",
    }


def test_context_shifts_the_logit_and_context_zero_is_the_plain_market():
    plain = small_market()
    market = small_market(context_features=(DEVICE, RETURNING))
    np.testing.assert_array_equal(plain.probability_table, market.probability_table)
    s, j, price, k = 1, 0, 900, 0
    base = float(plain.conversion_probability(s, j, price, k))
    for x in range(market.n_contexts):
        expected = sigmoid(np.log(base / (1 - base)) + market.context_offset[x])
        assert float(market.conversion_probability(s, j, price, k, x)) == pytest.approx(expected)
        a = market.action_index(j, price, k)
        assert market.context_probability_table[x, s, j, a] == pytest.approx(expected)


def test_the_oracle_depends_on_the_context_and_is_its_argmax():
    market = small_market(context_features=(DEVICE, RETURNING))
    table = market.context_expected_profit_table
    assert table.shape == (6, 2, 2, market.n_actions)
    for x in range(6):
        for s in range(2):
            for j in range(2):
                best = market.oracle_action(s, j, x)
                assert table[x, s, j, best] == table[x, s, j].max()
                assert market.oracle_expected_profit(s, j, x) == table[x, s, j].max()
    # Buyers who convert more readily bear higher prices: the oracle's price differs by context.
    assert (
        len({int(market.action_prices[0, a]) for a in market.context_oracle_actions[:, 0, 0]}) > 1
    )
    x = np.array([0, 5, 3])
    np.testing.assert_array_equal(
        market.oracle(np.array([0, 0, 1]), np.array([1, 1, 0]), x),
        market.context_oracle_actions[x, [0, 0, 1], [1, 1, 0]],
    )


def test_contexts_follow_the_mix_and_leave_the_other_streams_alone():
    market = small_market(context_features=(DEVICE, RETURNING))
    x = market.contexts(60_000, seed=4)
    freq = np.bincount(x, minlength=6) / len(x)
    np.testing.assert_allclose(freq, market.context_mix, atol=0.01)
    np.testing.assert_array_equal(x, market.contexts(60_000, seed=4))
    for a, b in zip(small_market().visitors(500, 4), market.visitors(500, 4), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not small_market().contexts(10, 4).any()
    # The digest counts contexts only when there are some.
    seg, sku = market.visitors(100, 4)
    u = market.purchase_draws(100, 4)
    assert stream_digest(seg, sku, u, np.zeros(100, dtype=np.int64)) == stream_digest(seg, sku, u)
    assert stream_digest(seg, sku, u, market.contexts(100, 4)) != stream_digest(seg, sku, u)


def test_play_uses_each_visitors_context():
    market = small_market(context_features=(DEVICE, RETURNING))
    n = 5000
    s, j = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    a = np.full(n, market.action_index(0, 1000))
    u = np.random.default_rng(3).random(n)
    low, _ = market.play(s, j, a, u, np.full(n, 3))  # mobile, not returning: -0.8
    high, _ = market.play(s, j, a, u, np.full(n, 2))  # desktop, vip: +1.5
    assert high.mean() > low.mean()
    assert (high >= low).all()  # same draws, higher probability: coupled outcomes


def test_context_schema_is_what_the_engine_accepts_and_encodes():
    from pricing.context import ContextSchema

    market = small_market(context_features=(DEVICE, RETURNING))
    schema = ContextSchema.from_dict(market.context_schema())
    assert schema.columns == ("device=mobile", "returning=yes", "returning=vip")
    assert schema.encode(market.context_values(5)).tolist() == [1.0, 0.0, 1.0]


def test_random_markets_with_context_keep_everything_else():
    plain = Market.random(3, 4, 2, 2, seed=9)
    rich = Market.random(3, 4, 2, 2, seed=9, n_context_features=3)
    assert [f.name for f in rich.context_features] == ["device", "traffic_source", "returning"]
    assert rich.n_contexts == 18
    assert plain.to_dict() | {"context_features": []} == rich.to_dict() | {"context_features": []}
    assert Market.from_dict(json.loads(json.dumps(rich.to_dict()))) == rich
    for f in rich.context_features:
        assert f.effect[0] == 0.0 and all(-0.5 <= e <= 0.5 for e in f.effect)
    with pytest.raises(ValueError, match="n_context_features"):
        Market.random(2, 2, 1, 1, seed=1, n_context_features=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": ("a",), "mix": (1.0,), "effect": (0.0,)}, "two distinct levels"),
        ({"levels": ("a", "a"), "mix": (0.5, 0.5), "effect": (0.0, 0.1)}, "two distinct levels"),
        ({"levels": ("a", "b"), "mix": (0.5, 0.6), "effect": (0.0, 0.1)}, "sum to 1"),
        ({"levels": ("a", "b"), "mix": (0.5, 0.5), "effect": (0.2, 0.1)}, "the first 0"),
        ({"levels": ("a", "b"), "mix": (0.5, 0.5), "effect": (0.0,)}, "one entry per level"),
        ({"name": "not ok", "levels": ("a", "b"), "mix": (0.5, 0.5), "effect": (0.0, 0.1)},
         "identifier"),
    ],
)  # fmt: skip
def test_invalid_context_features_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContextFeatureSpec(**({"name": "device"} | kwargs))
    with pytest.raises(ValueError, match="context features must be unique"):
        small_market(context_features=(DEVICE, DEVICE))


@pytest.mark.parametrize("family", ["probit", "linear", "exponential", "interaction"])
def test_markets_the_model_does_not_describe_are_valid_and_differ_from_its_form(family):
    from experiments.simulator import Market

    contexts = 2 if family == "interaction" else 0
    logistic = Market.random(3, 4, 2, 1, seed=5, n_context_features=contexts)
    other = Market.random(3, 4, 2, 1, seed=5, n_context_features=contexts, family=family)
    table = other.context_probability_table
    assert np.all((table > 0) & (table < 1))
    # Demand falls with price on every ladder, without promotion.
    plain = table[..., : other.n_prices]
    assert np.all(np.diff(plain, axis=-1) <= 1e-12)
    # Same conversion at list price and no promotion (except the context-dependent slopes).
    list_index = list(other.ladder).index(1.0)
    if family != "probit":
        np.testing.assert_allclose(plain[0, ..., list_index], logistic.context_probability_table[0, ..., list_index])
    assert not np.allclose(table, logistic.context_probability_table)
    again = Market.from_dict(other.to_dict())
    assert again == other and again.family == family
    assert "family" not in logistic.to_dict()  # a logistic market is described as before


def test_linear_demand_is_linear_in_price_and_an_unknown_family_is_refused():
    from experiments.simulator import Market

    m = Market.random(1, 1, 1, 0, seed=2, family="linear")
    p = m.probability_table[0, 0]
    inside = (p > 0.0011) & (p < 0.998)
    assert np.allclose(np.diff(np.diff(p[inside])), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="family"):
        Market.random(1, 1, 1, 0, seed=2, family="quadratic")


# ---- drift ----------------------------------------------------------------------------


def test_a_drifting_market_shifts_once_and_cycles_weekly():
    from experiments.simulator import Drift, phased

    market = Market.random(3, 4, 2, 1, seed=5)
    drift = Drift(shift_at=7000, elasticity_factor=1.5, intercept_shift=-0.4,
                  weekly_amplitude=0.3, visitors_per_day=500)  # fmt: skip
    phases = drift.markets(market)
    assert len(phases) == drift.n_phases == 14
    t = np.arange(14_000)
    phase = drift.phase(t)
    assert phase[0] == 0 and phase[499] == 0 and phase[500] == 1 and phase[3500] == 0  # day 7
    assert set(phase[:7000].tolist()) <= set(range(7)) and set(phase[7000:].tolist()) <= set(range(7, 14))
    # Monday's market before the shift is the base market; after it, elasticities x1.5.
    assert np.allclose(phases[0].probability_table, market.probability_table)
    assert np.allclose(phases[7].log_e, market.log_e + np.log(1.5))
    assert np.allclose(phases[7].a_sku, market.a_sku - 0.4) and np.allclose(phases[7].a_seg, market.a_seg)
    # The week moves conversion; the shift lowers it (and moves the oracle to lower prices).
    assert not np.allclose(phases[1].probability_table, phases[0].probability_table)
    at_list = [market.list_action(j) for j in range(market.n_skus)]
    cols = np.arange(market.n_skus)
    assert (phases[7].probability_table[:, cols, at_list] < phases[0].probability_table[:, cols, at_list]).all()
    segment, sku = market.visitors(14_000, 1)
    oracle = phased(phases, phase, "oracle", segment, sku).astype(np.int64)
    before = np.mean(market.action_prices[sku[:7000], oracle[:7000]] / market.list_price_minor[sku[:7000]])
    after = np.mean(market.action_prices[sku[7000:], oracle[7000:]] / market.list_price_minor[sku[7000:]])
    assert after < before
    # Per-visitor evaluation in each visitor's phase agrees with the phase's own table.
    expected = phased(phases, phase, "expected_profit", segment, sku, oracle)
    k = 9000
    assert expected[k] == pytest.approx(float(phases[phase[k]].expected_profit(segment[k], sku[k], oracle[k])))


def test_a_shift_can_hit_one_category_only():
    from experiments.simulator import Drift

    market = Market.random(3, 6, 2, 1, seed=5)
    phases = Drift(shift_at=100, elasticity_factor=1.5, intercept_shift=-0.4,
                   shift_categories=(1,)).markets(market)  # fmt: skip
    hit = market.sku_category == 1
    assert hit.any() and (~hit).any()
    np.testing.assert_allclose(phases[7].log_e[:, 1], market.log_e[:, 1] + np.log(1.5))
    np.testing.assert_allclose(phases[7].log_e[:, 0], market.log_e[:, 0])
    np.testing.assert_allclose(phases[7].a_sku[hit], market.a_sku[hit] - 0.4)
    np.testing.assert_allclose(phases[7].a_sku[~hit], market.a_sku[~hit])
    with pytest.raises(ValueError, match="categories"):
        Drift(shift_at=100, shift_categories=(2,)).markets(market)
    with pytest.raises(ValueError, match="shift_categories"):
        Drift(shift_at=100, shift_categories=())


def test_a_shift_can_hit_one_segment_only():
    from experiments.simulator import Drift

    market = Market.random(3, 6, 2, 1, seed=5)
    phases = Drift(shift_at=100, elasticity_factor=1.5, intercept_shift=-0.4,
                   shift_segments=(0,)).markets(market)  # fmt: skip
    np.testing.assert_allclose(phases[7].log_e[0], market.log_e[0] + np.log(1.5))
    np.testing.assert_allclose(phases[7].log_e[1:], market.log_e[1:])
    np.testing.assert_allclose(phases[7].a_seg, market.a_seg + np.array([-0.4, 0.0, 0.0]))
    np.testing.assert_allclose(phases[7].a_sku, market.a_sku)
    # One segment in one category: the elasticity only (no market intercept is that cell's).
    pair = Drift(shift_at=100, elasticity_factor=1.5, shift_segments=(2,), shift_categories=(1,)).markets(market)
    moved = np.zeros_like(market.log_e, dtype=bool)
    moved[2, 1] = True
    np.testing.assert_allclose(pair[7].log_e[moved], market.log_e[moved] + np.log(1.5))
    np.testing.assert_allclose(pair[7].log_e[~moved], market.log_e[~moved])
    with pytest.raises(ValueError, match="intercept"):
        Drift(shift_at=100, intercept_shift=-0.4, shift_segments=(0,), shift_categories=(1,))
    with pytest.raises(ValueError, match="segments"):
        Drift(shift_at=100, shift_segments=(3,)).markets(market)


# ---- reference prices ---------------------------------------------------------------


def test_reference_price_demand_remembers_the_last_price_of_each_cell():
    """Customers compare with the price served to the cell's previous visitor: a rise loses
    more than a cut wins; the tables are the steady state; a stream may be played in pieces."""
    from experiments.simulator import REFERENCE_GAIN, REFERENCE_LOSS, Market

    m = Market.random(3, 4, 2, 1, seed=5, n_context_features=1, family="reference")
    logistic = Market.random(3, 4, 2, 1, seed=5, n_context_features=1)
    assert m.path_dependent and not logistic.path_dependent
    np.testing.assert_allclose(m.context_probability_table, logistic.context_probability_table)
    assert Market.from_dict(m.to_dict()) == m
    lo, hi = list(m.ladder).index(0.9), list(m.ladder).index(1.1)
    # One cell, prices 0.9, 1.1, 1.1, 0.9 of list: the first compares with list price.
    s, j, x = [1] * 4, [2] * 4, [0] * 4
    p = m.stream_probability(s, j, [lo, hi, hi, lo], x)
    steady = logistic.stream_probability(s, j, [lo, hi, hi, lo], x)
    e = float(np.exp(m.log_e[1, m.sku_category[2]]))
    logit = np.log(p / (1 - p)) - np.log(steady / (1 - steady))
    d = np.log(1.1 / 0.9)
    np.testing.assert_allclose(
        logit, [-e * REFERENCE_GAIN * np.log(0.9), -e * REFERENCE_LOSS * d, 0.0, e * REFERENCE_GAIN * d]
    )
    # Visitors of other cells in between do not move this cell's reference.
    p2 = m.stream_probability([1, 0, 1], [2, 2, 2], [lo, hi, hi], [0, 0, 0])
    assert p2[2] == pytest.approx(p[1])
    # Played in pieces with a carried state, a stream gives the same as played whole.
    seg, sku = m.visitors(3000, 1)
    ctx = m.contexts(3000, 1)
    a = np.random.default_rng(0).integers(m.n_actions, size=3000)
    whole = m.stream_probability(seg, sku, a, ctx)
    state = m.reference_state()
    pieces = [m.stream_probability(seg[i : i + 700], sku[i : i + 700], a[i : i + 700], ctx[i : i + 700], state)
              for i in range(0, 3000, 700)]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # A constant action per cell meets the steady state after its first visit; random
    # prices lose demand to the loss aversion.
    oracle = m.oracle(seg, sku, ctx)
    moved = m.stream_expected_profit(seg, sku, oracle, ctx) != m.expected_profit(seg, sku, oracle, ctx)
    assert moved.sum() <= m.n_contexts * m.n_segments * m.n_skus
    assert m.stream_expected_profit(seg, sku, a, ctx).mean() < m.expected_profit(seg, sku, a, ctx).mean()
    converted, _ = m.play(seg, sku, a, m.purchase_draws(3000, 1), ctx)
    np.testing.assert_array_equal(converted, m.purchase_draws(3000, 1) < whole)
    # Other families ignore the path.
    np.testing.assert_array_equal(
        logistic.stream_expected_profit(seg, sku, a, ctx), logistic.expected_profit(seg, sku, a, ctx)
    )


def test_a_reference_price_stream_refuses_what_it_cannot_carry():
    from experiments.simulator import Market

    m = Market.random(2, 3, 1, 1, seed=1, family="reference")
    with pytest.raises(ValueError, match="1-d"):
        m.stream_probability([[0, 1]], [[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="C-contiguous"):
        m.stream_probability([0], [0], [0], [0], np.ones((3, 2, 1)).T)
    with pytest.raises(ValueError, match="shape"):
        m.stream_probability([0], [0], [0], [0], np.ones((1, 2, 4)))
