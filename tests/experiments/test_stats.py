"""Experiment statistics: hand-computed lifts, a bootstrap check of the delta method, the
sample-ratio-mismatch test, do-no-harm decisions and degenerate inputs.

Reference values are written out as arithmetic in the comments and recomputed here with
``statistics.NormalDist`` and plain floats, so they share no code with the module.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import FrozenInstanceError
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.stats import (
    METRICS,
    Lift,
    VariantStats,
    do_no_harm,
    relative_lift,
    sample_ratio_mismatch,
    summarize,
)

N = NormalDist()
REL = 1e-9


def conv(name, visitors, conversions):
    """Variant with conversions only (money sums 0)."""
    return VariantStats(name, visitors, conversions, 0.0, 0.0, 0.0, 0.0)


def from_values(name, revenue, profit=None, conversions=None):
    """Variant built from per-visitor values, as the API would aggregate them."""
    profit = [0.0] * len(revenue) if profit is None else profit
    if conversions is None:
        conversions = sum(1 for r in revenue if r != 0)
    return VariantStats(
        name,
        len(revenue),
        conversions,
        float(sum(revenue)),
        float(sum(r * r for r in revenue)),
        float(sum(profit)),
        float(sum(p * p for p in profit)),
    )


def normal_losses(lift, se):
    """E[max(0, -L)] and E[max(0, L)] for L ~ N(lift, se²), from the textbook formulas."""
    d = lift / se
    loss_treatment = se * N.pdf(d) - lift * N.cdf(-d)
    loss_control = se * N.pdf(d) + lift * N.cdf(d)
    return loss_treatment, loss_control


def assert_undefined(lift, *fragments):
    assert isinstance(lift, Lift)
    numeric = (lift.estimate, lift.se, lift.lower, lift.upper, lift.prob_better)
    assert numeric == (None, None, None, None, None)
    assert lift.expected_loss is None and lift.expected_loss_control is None
    for fragment in fragments:
        assert fragment in lift.message


# ------------------------------------------------------------------------------ summarize
def test_summarize_means_and_totals():
    s = summarize(VariantStats("engine", 200, 30, 1500.0, 90_000.0, -40.0, 800.0))
    assert (s.name, s.visitors, s.conversions) == ("engine", 200, 30)
    assert s.revenue == 1500.0 and s.profit == -40.0
    assert s.conversion_rate == pytest.approx(30 / 200, rel=REL)
    assert s.revenue_per_visitor == pytest.approx(7.5, rel=REL)
    assert s.profit_per_visitor == pytest.approx(-0.2, rel=REL)


def test_summarize_without_visitors_gives_none_not_nan():
    s = summarize(VariantStats("control", 0, 0, 0.0, 0.0, 0.0, 0.0))
    assert s.visitors == 0 and s.revenue == 0.0 and s.profit == 0.0
    assert s.conversion_rate is None
    assert s.revenue_per_visitor is None
    assert s.profit_per_visitor is None


# ------------------------------------------------------------------ hand-computed lifts
def test_conversion_lift_matches_hand_computation():
    control, treatment = conv("control", 1000, 100), conv("engine", 1000, 120)
    lift = relative_lift(treatment, control, "conversion_rate")
    # p_c = 0.10, p_t = 0.12  ->  lift = 0.12 / 0.10 - 1 = 0.2
    # var_c = 0.10·0.90·1000/999 = 90/999      var_t = 0.12·0.88·1000/999 = 105.6/999
    # se² = var_t/(n_t·p_c²) + p_t²·var_c/(n_c·p_c⁴)
    #     = (105.6/999)/(1000·0.01) + 0.0144·(90/999)/(1000·0.0001)
    #     = 10.56/999 + 12.96/999 = 23.52/999          ->  se ≈ 0.153439
    se = math.sqrt(23.52 / 999)
    assert lift.metric == "conversion_rate"
    assert lift.estimate == pytest.approx(0.2, rel=REL)
    assert lift.se == pytest.approx(se, rel=REL)
    # 95 % interval: 0.2 ± 1.959964·se
    z = N.inv_cdf(0.975)
    assert lift.lower == pytest.approx(0.2 - z * se, rel=REL)
    assert lift.upper == pytest.approx(0.2 + z * se, rel=REL)
    # P(lift > 0) = Φ(0.2/se) = Φ(1.303449) ≈ 0.90379
    assert lift.prob_better == pytest.approx(N.cdf(0.2 / se), rel=REL)
    assert lift.prob_better == pytest.approx(0.903789, abs=1e-6)
    loss_t, loss_c = normal_losses(0.2, se)
    assert lift.expected_loss == pytest.approx(loss_t, rel=REL)
    assert lift.expected_loss_control == pytest.approx(loss_c, rel=REL)
    # The two losses differ by the mean of L.
    assert lift.expected_loss_control - lift.expected_loss == pytest.approx(0.2, rel=REL)
    assert "+20.00%" in lift.message


def test_revenue_lift_matches_hand_computation():
    # control per-visitor revenue [0, 10, 0, 30]: Σ = 40, Σ² = 1000
    # treatment per-visitor revenue [0, 20, 20, 0, 20]: Σ = 60, Σ² = 1200
    control = VariantStats("control", 4, 2, 40.0, 1000.0, 0.0, 0.0)
    treatment = VariantStats("engine", 5, 3, 60.0, 1200.0, 0.0, 0.0)
    lift = relative_lift(treatment, control, "revenue_per_visitor")
    # m_c = 40/4 = 10, var_c = (1000 − 40²/4)/3 = 600/3 = 200
    # m_t = 60/5 = 12, var_t = (1200 − 60²/5)/4 = 480/4 = 120
    # lift = 12/10 − 1 = 0.2
    # se² = 120/(5·10²) + 12²·200/(4·10⁴) = 0.24 + 0.72 = 0.96
    se = math.sqrt(0.96)
    assert lift.estimate == pytest.approx(0.2, rel=REL)
    assert lift.se == pytest.approx(se, rel=REL)
    assert lift.prob_better == pytest.approx(N.cdf(0.2 / se), rel=REL)
    loss_t, loss_c = normal_losses(0.2, se)
    assert lift.expected_loss == pytest.approx(loss_t, rel=REL)
    assert lift.expected_loss_control == pytest.approx(loss_c, rel=REL)
    # The sample variances above are what statistics.variance gives for the raw values.
    assert statistics.variance([0, 10, 0, 30]) == 200
    assert statistics.variance([0, 20, 20, 0, 20]) == 120


def test_revenue_sums_built_from_raw_values_give_the_same_lift():
    control = from_values("control", [0.0, 10.0, 0.0, 30.0])
    treatment = from_values("engine", [0.0, 20.0, 20.0, 0.0, 20.0])
    lift = relative_lift(treatment, control, "revenue_per_visitor")
    assert lift.se == pytest.approx(math.sqrt(0.96), rel=REL)


def test_negative_control_profit_keeps_positive_meaning_better():
    # control profit [-4, 0, -2, 0]: m_c = -1.5, var_c = (20 − 36/4)/3 = 11/3
    # treatment profit [-1, 0, 0, -2, 0]: m_t = -0.6, var_t = (5 − 9/5)/4 = 0.8
    control = from_values("control", [0.0] * 4, profit=[-4.0, 0.0, -2.0, 0.0])
    treatment = from_values("engine", [0.0] * 5, profit=[-1.0, 0.0, 0.0, -2.0, 0.0])
    lift = relative_lift(treatment, control, "profit_per_visitor")
    # lift = (m_t − m_c)/|m_c| = 0.9/1.5 = 0.6 (m_t/m_c − 1 would say −0.6)
    # se² = 0.8/(5·2.25) + 0.36·(11/3)/(4·1.5⁴) = 0.8/11.25 + 1.32/20.25
    se = math.sqrt(0.8 / 11.25 + 1.32 / 20.25)
    assert lift.estimate == pytest.approx(0.6, rel=REL)
    assert lift.se == pytest.approx(se, rel=REL)
    assert lift.prob_better == pytest.approx(N.cdf(0.6 / se), rel=REL)
    assert lift.prob_better > 0.5
    assert "negative" in lift.message


def test_credible_level_sets_the_interval_width():
    control, treatment = conv("control", 1000, 100), conv("engine", 1000, 120)
    lift = relative_lift(treatment, control, "conversion_rate", credible_level=0.9)
    se = math.sqrt(23.52 / 999)
    z = 1.6448536269514722  # Φ⁻¹(0.95)
    assert lift.lower == pytest.approx(0.2 - z * se, rel=REL)
    assert lift.upper == pytest.approx(0.2 + z * se, rel=REL)
    assert "90% credible interval" in lift.message


def test_far_tails_stay_finite_and_non_negative():
    # lift 1.0 with se ≈ 0.01: d ≈ 100, where φ and Φ(−d) underflow.
    control, treatment = conv("control", 10**7, 10**5), conv("engine", 10**7, 2 * 10**5)
    lift = relative_lift(treatment, control, "conversion_rate")
    assert lift.prob_better == 1.0
    assert lift.expected_loss == 0.0
    assert lift.expected_loss_control == pytest.approx(1.0, rel=REL)
    worse = relative_lift(control, treatment, "conversion_rate")
    assert worse.prob_better == 0.0
    assert worse.expected_loss == pytest.approx(0.5, rel=REL)
    assert worse.expected_loss_control == 0.0


def test_imprecise_control_is_flagged_in_the_message():
    lift = relative_lift(conv("engine", 50, 5), conv("control", 50, 4), "conversion_rate")
    assert lift.estimate is not None
    assert "rough" in lift.message
    precise = relative_lift(
        conv("engine", 1000, 120), conv("control", 1000, 100), "conversion_rate"
    )
    assert "rough" not in precise.message


def test_lift_is_frozen():
    lift = relative_lift(conv("engine", 1000, 120), conv("control", 1000, 100), "conversion_rate")
    with pytest.raises(FrozenInstanceError):
        lift.estimate = 0.0  # type: ignore[misc]


# ---------------------------------------------------------- delta method vs. bootstrap
def bootstrap_lift_sd(x_t, x_c, rng, draws=1000, chunk=200):
    """Standard deviation of mean(x_t*)/mean(x_c*) − 1 over bootstrap resamples."""
    lifts = []
    for _ in range(draws // chunk):
        idx_t = rng.integers(0, x_t.size, size=(chunk, x_t.size))
        idx_c = rng.integers(0, x_c.size, size=(chunk, x_c.size))
        lifts.append(x_t[idx_t].mean(axis=1) / x_c[idx_c].mean(axis=1) - 1.0)
    return float(np.concatenate(lifts).std(ddof=1))


@pytest.mark.parametrize("metric", ["conversion_rate", "revenue_per_visitor"])
def test_delta_method_se_agrees_with_bootstrap(metric):
    rng = np.random.default_rng(20240611)
    n = 4000
    bought_c = rng.random(n) < 0.10
    bought_t = rng.random(n) < 0.12
    # Skewed basket values (lognormal, median ≈ 20 currency units) for buyers, 0 otherwise.
    rev_c = np.where(bought_c, rng.lognormal(3.0, 0.8, n), 0.0)
    rev_t = np.where(bought_t, rng.lognormal(3.0, 0.8, n), 0.0)
    control = from_values("control", rev_c.tolist(), conversions=int(bought_c.sum()))
    treatment = from_values("engine", rev_t.tolist(), conversions=int(bought_t.sum()))

    lift = relative_lift(treatment, control, metric)
    if metric == "conversion_rate":
        x_t, x_c = bought_t.astype(float), bought_c.astype(float)
    else:
        x_t, x_c = rev_t, rev_c
    assert lift.estimate == pytest.approx(x_t.mean() / x_c.mean() - 1.0, rel=1e-9)
    sd = bootstrap_lift_sd(x_t, x_c, rng)
    assert lift.se == pytest.approx(sd, rel=0.10)


# ---------------------------------------------------------------- degenerate lift inputs
@pytest.mark.parametrize("metric", METRICS)
def test_no_visitors_in_either_arm(metric):
    empty_c, empty_t = conv("control", 0, 0), conv("engine", 0, 0)
    some = conv("engine", 100, 10)
    assert_undefined(relative_lift(some, empty_c, metric), "control has no visitors yet")
    assert_undefined(
        relative_lift(empty_t, conv("control", 100, 10), metric),
        "treatment 'engine' has no visitors",
    )
    both = relative_lift(empty_t, empty_c, metric)
    assert_undefined(both, "treatment 'engine' and control have no visitors yet")


@pytest.mark.parametrize("metric", METRICS)
def test_single_visitor(metric):
    one = VariantStats("control", 1, 1, 10.0, 100.0, 3.0, 9.0)
    assert_undefined(relative_lift(conv("engine", 100, 10), one, metric), "single visitor")
    assert_undefined(
        relative_lift(one, from_values("engine", [5.0, 0.0]), metric), "single visitor"
    )


def test_control_without_conversions_is_undefined():
    lift = relative_lift(conv("engine", 500, 7), conv("control", 500, 0), "conversion_rate")
    assert_undefined(lift)
    assert lift.message == "control has no conversions yet: relative lift is undefined"


@pytest.mark.parametrize("metric", ["revenue_per_visitor", "profit_per_visitor"])
def test_control_with_zero_money_mean_is_undefined(metric):
    control = VariantStats("control", 10, 0, 0.0, 0.0, 0.0, 0.0)
    treatment = VariantStats("engine", 10, 2, 30.0, 500.0, 6.0, 20.0)
    assert_undefined(relative_lift(treatment, control, metric), "exactly 0", "undefined")
    # Profit that cancels to exactly 0 across visitors: mean 0 but non-zero spread.
    cancel = from_values("control", [0.0] * 4, profit=[-5.0, 5.0, 0.0, 0.0])
    assert_undefined(relative_lift(treatment, cancel, "profit_per_visitor"), "undefined")


def test_zero_variance_in_both_arms_is_a_point_mass():
    # Everyone converts in both arms: lift 0, nothing to tell them apart.
    tie = relative_lift(conv("engine", 10, 10), conv("control", 20, 20), "conversion_rate")
    assert (tie.estimate, tie.se, tie.lower, tie.upper) == (0.0, 0.0, 0.0, 0.0)
    assert tie.prob_better == 0.5
    assert tie.expected_loss == 0.0 and tie.expected_loss_control == 0.0
    assert "zero variance" in tie.message

    # Every visitor spends exactly 10 (control) or 12 (treatment): lift exactly 0.2.
    control = from_values("control", [10.0] * 3)
    treatment = from_values("engine", [12.0] * 3)
    up = relative_lift(treatment, control, "revenue_per_visitor")
    assert up.estimate == pytest.approx(0.2, rel=REL)
    assert up.se == 0.0 and up.lower == up.upper == up.estimate
    assert up.prob_better == 1.0
    assert up.expected_loss == 0.0
    assert up.expected_loss_control == pytest.approx(0.2, rel=REL)
    down = relative_lift(control, treatment, "revenue_per_visitor")
    assert down.prob_better == 0.0
    assert down.expected_loss == pytest.approx(1 / 6, rel=REL)  # 1 − 10/12


def test_round_off_in_the_sums_is_not_mistaken_for_spread():
    # 0.1 is not exact in binary: Σx² − (Σx)²/n is a few ulps, not 0, for constant data.
    values = [0.1] * 7
    total = sum(values)
    assert sum(v * v for v in values) - total * total / 7 != 0.0
    lift = relative_lift(
        from_values("engine", values), from_values("control", values), "revenue_per_visitor"
    )
    assert lift.se == 0.0
    assert lift.prob_better == 0.5


def test_treatment_with_no_conversions_against_a_varying_control():
    # se formula gives 0 here (var_t = 0 and m_t = 0), which would claim certainty.
    lift = relative_lift(conv("engine", 10, 0), conv("control", 10, 1), "conversion_rate")
    assert_undefined(lift, "no conversions", "-100%")


def test_inconsistent_statistics_are_reported_not_raised():
    too_many = conv("control", 10, 11)
    assert_undefined(
        relative_lift(conv("engine", 10, 1), too_many, "conversion_rate"),
        "11 conversions",
        "10 visitors",
    )
    # Σx = 10 over 2 visitors forces Σx² >= 50; 20 is impossible.
    impossible = VariantStats("engine", 2, 1, 10.0, 20.0, 0.0, 0.0)
    lift = relative_lift(impossible, from_values("control", [1.0, 3.0]), "revenue_per_visitor")
    assert_undefined(lift, "sum of squares")
    ghost = VariantStats("control", 0, 0, 5.0, 25.0, 0.0, 0.0)
    assert_undefined(
        relative_lift(conv("engine", 5, 1), ghost, "revenue_per_visitor"), "no visitors"
    )


def test_invalid_arguments_raise_naming_them():
    a, b = conv("engine", 100, 10), conv("control", 100, 10)
    with pytest.raises(ValueError, match="metric"):
        relative_lift(a, b, "clicks")
    for level in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="credible_level"):
            relative_lift(a, b, "conversion_rate", credible_level=level)
    with pytest.raises(ValueError, match="visitors"):
        VariantStats("x", -1, 0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="conversions"):
        VariantStats("x", 3, True, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="revenue_sum"):
        VariantStats("x", 3, 1, float("nan"), 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="profit_sq_sum"):
        VariantStats("x", 3, 1, 0.0, 0.0, 0.0, -1.0)


counts = st.integers(min_value=0, max_value=10**6)
money = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
squares = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@st.composite
def variants(draw):
    n = draw(counts)
    return VariantStats(
        "v", n, draw(st.integers(0, 10**6)), draw(money), draw(squares), draw(money), draw(squares)
    )


@settings(max_examples=300, deadline=None)
@given(variants(), variants(), st.sampled_from(METRICS))
def test_arbitrary_statistics_never_raise(treatment, control, metric):
    lift = relative_lift(treatment, control, metric)
    assert lift.message
    if lift.estimate is None:
        assert lift.se is None and lift.prob_better is None
    else:
        assert lift.se is not None and lift.se >= 0 and math.isfinite(lift.se)
        assert 0.0 <= lift.prob_better <= 1.0
        assert lift.expected_loss >= 0 and lift.expected_loss_control >= 0
    harm = do_no_harm(treatment, control, metric, 0.02)
    assert harm.status in {"ok", "harm", "inconclusive"} and harm.message


# --------------------------------------------------------------------------------- SRM
def test_srm_flags_a_clear_mismatch():
    # e = 20600/2 = 10300 each; χ² = 2·300²/10300 = 180000/10300 ≈ 17.476
    # 1 dof: p = P(|Z| > √χ²) = erfc(√(χ²/2)) ≈ 2.9e-5 < 0.001
    test = sample_ratio_mismatch([10_000, 10_600], [0.5, 0.5])
    chi2 = 180_000 / 10_300
    assert test.statistic == pytest.approx(chi2, rel=REL)
    assert test.dof == 1
    assert test.p_value == pytest.approx(math.erfc(math.sqrt(chi2 / 2)), rel=1e-9)
    assert test.expected == (10_300.0, 10_300.0)
    assert test.flagged
    assert "sample ratio mismatch" in test.message


def test_srm_borderline_split_is_not_flagged_at_the_strict_threshold():
    # 10,000 vs 10,300: χ² = 2·150²/10150 ≈ 4.4335, p ≈ 0.035 — far above 0.001.
    test = sample_ratio_mismatch([10_000, 10_300], [0.5, 0.5])
    chi2 = 2 * 150**2 / 10_150
    assert test.statistic == pytest.approx(chi2, rel=REL)
    assert test.p_value == pytest.approx(math.erfc(math.sqrt(chi2 / 2)), rel=1e-9)
    assert test.p_value == pytest.approx(0.03524, abs=1e-5)
    assert not test.flagged
    assert sample_ratio_mismatch([10_000, 10_300], [0.5, 0.5], threshold=0.05).flagged


def test_srm_fair_split_is_not_flagged():
    # 10,000 vs 10,050: χ² = 2·25²/10025 ≈ 0.1247, p ≈ 0.724
    test = sample_ratio_mismatch([10_000, 10_050], [0.5, 0.5])
    assert test.statistic == pytest.approx(2 * 25**2 / 10_025, rel=REL)
    assert test.p_value == pytest.approx(0.7240, abs=1e-4)
    assert not test.flagged
    assert "consistent" in test.message


def test_srm_three_variants_with_unequal_allocation():
    # shares 0.5/0.3/0.2 of 10,000 -> e = 5000/3000/2000
    # χ² = 0²/5000 + 100²/3000 + 100²/2000 = 10/3 + 5 = 25/3; 2 dof: p = exp(−χ²/2)
    test = sample_ratio_mismatch([5000, 3100, 1900], [0.5, 0.3, 0.2])
    chi2 = sum(
        (o - e) ** 2 / e for o, e in zip([5000, 3100, 1900], [5000, 3000, 2000], strict=True)
    )
    assert chi2 == pytest.approx(25 / 3, rel=REL)
    assert test.statistic == pytest.approx(chi2, rel=REL)
    assert test.dof == 2
    assert test.p_value == pytest.approx(math.exp(-chi2 / 2), rel=1e-9)
    assert not test.flagged
    assert sample_ratio_mismatch([5000, 3100, 1900], [0.5, 0.3, 0.2], threshold=0.05).flagged


def test_srm_degenerate_data_gives_messages():
    none = sample_ratio_mismatch([0, 0], [0.5, 0.5])
    assert (none.statistic, none.p_value, none.flagged) == (None, None, False)
    assert "no visitors" in none.message
    # Visitors in an arm allocated 0 % cannot happen under the allocation.
    stray = sample_ratio_mismatch([500, 480, 3], [0.5, 0.5, 0.0])
    assert stray.flagged and stray.p_value == 0.0 and stray.statistic is None
    assert "variant 2 (3 visitors)" in stray.message
    # An arm allocated 0 % with no visitors is simply left out of the test.
    idle = sample_ratio_mismatch([5000, 5000, 0], [0.5, 0.5, 0.0])
    assert idle.dof == 1 and idle.statistic == 0.0 and idle.p_value == pytest.approx(1.0)
    only = sample_ratio_mismatch([0, 42], [0.0, 1.0])
    assert (only.dof, only.p_value, only.flagged) == (0, 1.0, False)
    # Shares that sum to 1 only within rounding are accepted.
    thirds = sample_ratio_mismatch([100, 100, 100], [1 / 3, 1 / 3, 1 / 3])
    assert thirds.statistic == pytest.approx(0.0, abs=1e-12) and not thirds.flagged


@pytest.mark.parametrize(
    ("observed", "shares", "threshold", "argument"),
    [
        ([100, 100], [0.5, 0.4], 0.001, "expected_shares"),
        ([100, 100], [0.5, 0.5 + 1e-8], 0.001, "expected_shares"),
        ([100, 100], [0.5, 0.5, 0.0], 0.001, "expected_shares"),
        ([100, 100], [1.5, -0.5], 0.001, r"expected_shares\[1\]"),
        ([100, 100], [0.5, float("nan")], 0.001, r"expected_shares\[1\]"),
        ([100, -1], [0.5, 0.5], 0.001, r"observed_visitors\[1\]"),
        ([100, 10.5], [0.5, 0.5], 0.001, r"observed_visitors\[1\]"),
        ([], [], 0.001, "observed_visitors"),
        ([100, 100], [0.5, 0.5], 0.0, "threshold"),
        ([100, 100], [0.5, 0.5], 1.0, "threshold"),
    ],
)
def test_srm_invalid_arguments_raise_naming_them(observed, shares, threshold, argument):
    with pytest.raises(ValueError, match=argument):
        sample_ratio_mismatch(observed, shares, threshold=threshold)


# -------------------------------------------------------------------------- do no harm
def test_do_no_harm_detects_clear_harm():
    control, treatment = conv("control", 10_000, 1000), conv("engine", 10_000, 800)
    result = do_no_harm(treatment, control, "conversion_rate", max_relative_drop=0.05)
    # lift = 0.08/0.10 − 1 = −0.2
    # se² = (0.08·0.92·1e4/9999)/(1e4·0.01) + 0.0064·(0.09·1e4/9999)/(1e4·1e-4)
    se = math.sqrt(0.0736 / 0.9999 / 100 + 0.0064 * 0.09 / 0.9999)
    # P(L < −0.05) = Φ((−0.05 − (−0.2))/se)
    assert result.status == "harm"
    assert result.probability == pytest.approx(N.cdf(0.15 / se), rel=REL)
    assert result.probability > 0.99
    assert result.message.startswith("harm")


def test_do_no_harm_clear_ok():
    control, treatment = conv("control", 100_000, 10_000), conv("engine", 100_000, 10_000)
    result = do_no_harm(treatment, control, "conversion_rate", max_relative_drop=0.05)
    # lift 0, se² = 2·0.09·(1e5/99999)/(1e5·0.01)  ->  P(L < −0.05) = Φ(−0.05/se) ≈ 1e-4
    se = math.sqrt(2 * 0.09 / 0.99999 / 1000)
    assert result.status == "ok"
    assert result.probability == pytest.approx(N.cdf(-0.05 / se), rel=1e-9)
    assert result.probability < 0.001


def test_do_no_harm_inconclusive_with_tiny_samples():
    result = do_no_harm(conv("engine", 20, 2), conv("control", 20, 2), "conversion_rate", 0.05)
    assert result.status == "inconclusive"
    assert result.probability is not None and 0.05 < result.probability < 0.95
    assert "collect more data" in result.message


def test_do_no_harm_on_money_metric_agrees_with_the_lift():
    control = from_values("control", [0.0, 10.0, 0.0, 30.0] * 50)
    treatment = from_values("engine", [0.0, 20.0, 0.0, 15.0] * 50)
    lift = relative_lift(treatment, control, "revenue_per_visitor")
    result = do_no_harm(treatment, control, "revenue_per_visitor", 0.2, prob=0.9)
    assert result.probability == pytest.approx(N.cdf(-(lift.estimate + 0.2) / lift.se), rel=1e-9)


def test_do_no_harm_degenerate_and_point_mass():
    result = do_no_harm(conv("engine", 0, 0), conv("control", 0, 0), "conversion_rate", 0.05)
    assert result.status == "inconclusive" and result.probability is None
    assert "no visitors yet" in result.message
    undefined = do_no_harm(conv("engine", 100, 3), conv("control", 100, 0), "conversion_rate", 0.05)
    assert undefined.status == "inconclusive" and "undefined" in undefined.message
    # Both arms convert everyone: the lift is exactly 0.
    same = (conv("engine", 10, 10), conv("control", 10, 10))
    assert do_no_harm(*same, "conversion_rate", 0.01).status == "ok"
    assert do_no_harm(*same, "conversion_rate", 0.0).status == "inconclusive"
    worse = do_no_harm(
        from_values("engine", [9.0] * 4),
        from_values("control", [10.0] * 4),
        "revenue_per_visitor",
        0.05,
    )
    assert (worse.status, worse.probability) == ("harm", 1.0)


def test_do_no_harm_invalid_arguments():
    a, b = conv("engine", 100, 10), conv("control", 100, 10)
    with pytest.raises(ValueError, match="max_relative_drop"):
        do_no_harm(a, b, "conversion_rate", -0.1)
    with pytest.raises(ValueError, match="prob"):
        do_no_harm(a, b, "conversion_rate", 0.05, prob=0.4)
    with pytest.raises(ValueError, match="metric"):
        do_no_harm(a, b, "aov", 0.05)
