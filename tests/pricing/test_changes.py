"""Change detection (pricing.changes): calibrated when nothing moved, quick when demand shifts."""

from __future__ import annotations

import numpy as np
import pytest

from pricing.cells import CellRecord, Cells
from pricing.changes import (
    ChangeDetection,
    ChangePoints,
    ChangeTest,
    change_weight,
    predictive_check,
)
from tests.factories import synthetic_posterior, two_category_posterior

RATIOS = (0.8, 0.9, 1.0, 1.1)


def _cells(posterior, rng, *, trials=60, intercept_shift=0.0, elasticity_factor=1.0,
           segments=("default", "loyalty"), skus=("TEA-1", "TEA-2")):  # fmt: skip
    """Counts drawn from one posterior draw (a truth the posterior believes in), optionally moved."""
    draw = int(rng.integers(posterior.n_draws))
    records = []
    for segment in segments:
        for sku in skus:
            intercept, slope = posterior.logit_terms(segment, sku, "tea")
            for ratio in RATIOS:
                eta = intercept[draw] + intercept_shift + elasticity_factor * slope[draw] * np.log(ratio)
                p = 1.0 / (1.0 + np.exp(-eta))
                records.append(CellRecord(segment, sku, "tea", ratio, "", trials,
                                          int(rng.binomial(trials, p))))  # fmt: skip
    return Cells.from_records(records)


def test_false_alarms_happen_at_about_the_chosen_rate_when_demand_did_not_move():
    posterior = synthetic_posterior(spread=0.2, seed=1)
    rng = np.random.default_rng(7)
    alarms = [predictive_check(posterior, _cells(posterior, rng), alpha=0.05).detected
              for _ in range(300)]  # fmt: skip
    # The predictive variance counts the posterior's spread as well as the binomial noise.
    assert 0.01 <= np.mean(alarms) <= 0.10


def test_a_shift_in_demand_is_found_and_points_the_right_way():
    posterior = synthetic_posterior(spread=0.1, seed=1)
    rng = np.random.default_rng(8)
    found = [predictive_check(posterior, _cells(posterior, rng, trials=250, intercept_shift=-0.6))
             for _ in range(20)]  # fmt: skip
    assert np.mean([t.detected for t in found]) >= 0.9
    assert all(t.z.mean() < 0 for t in found)  # fewer conversions than predicted
    summary = found[0].to_dict()
    assert summary["blocks"] == 2 and summary["observed"] < summary["expected"]
    assert summary["worst_z"] < 0


def test_cells_the_model_never_saw_and_thin_blocks_are_left_out():
    posterior = synthetic_posterior(spread=0.1)
    cells = Cells.from_records([
        CellRecord("new-segment", "TEA-1", "tea", 1.0, "", 500, 0),  # unseen segment
        CellRecord("default", "TEA-1", "tea", 1.0, "", 5, 5),  # too few trials in its block
    ])  # fmt: skip
    test = predictive_check(posterior, cells, min_trials=20)
    assert test.blocks == () and test.p_value == 1.0 and not test.detected


def test_an_outcome_before_the_change_counts_the_chosen_weight():
    assert change_weight(10.0, None, 0.1) == 1.0  # no change detected
    assert change_weight(3.0, 3.0, 0.1) == 1.0  # the change's own day is the new regime
    assert change_weight(4.0, 3.0, 0.1) == 0.1
    with pytest.raises(ValueError):
        change_weight(4.0, 3.0, 0.0)
    with pytest.raises(ValueError):
        ChangeDetection(alpha=1.5)
    with pytest.raises(ValueError):
        predictive_check(synthetic_posterior(), Cells.from_records([]), alpha=0.0)


def test_an_elasticity_that_moved_is_found_even_where_the_level_barely_did():
    posterior = synthetic_posterior(spread=0.1, seed=1)
    rng = np.random.default_rng(9)
    found = [predictive_check(posterior, _cells(posterior, rng, trials=250, elasticity_factor=2.0))
             for _ in range(20)]  # fmt: skip
    assert np.mean([t.detected for t in found]) >= 0.9
    # Steeper demand: more buyers than predicted below list, fewer above.
    assert all(np.nanmean(t.slope_z) < 0 for t in found)
    assert np.mean([np.abs(t.z).max() for t in found]) < np.mean([np.nanmax(np.abs(t.slope_z)) for t in found])


def test_a_market_wide_shift_shows_in_the_pooled_test_before_any_one_block():
    segments = tuple(f"s{i}" for i in range(8))
    posterior = synthetic_posterior(segments=segments, spread=0.05, seed=1)
    rng = np.random.default_rng(3)
    found = [predictive_check(posterior, _cells(posterior, rng, trials=100, intercept_shift=-0.25,
                                                segments=segments))
             for _ in range(40)]  # fmt: skip
    assert np.mean([t.detected for t in found]) >= 0.7
    pooled = np.mean([abs(t.pooled_z[0]) for t in found])
    assert pooled > np.mean([np.abs(t.z).max() for t in found])
    assert found[0].to_dict()["pooled_z"][0] < 0


def test_fan_out_centres_a_moved_category_on_the_shifted_levels_when_only_some_moved():
    """The full fit folds the common shift into mu_global and mu_a only when every
    category moved; otherwise a moved category's own fit must add it to its centres."""
    from dataclasses import replace

    from pricing.fanout import SharedParameters

    base = two_category_posterior()
    some = replace(base, meta={**base.meta, "regime_shift": {"intercept": -0.3, "log_elasticity": 0.4,
                                                               "categories": ["tea"]}})  # fmt: skip
    shared = SharedParameters.from_posterior(some)
    assert shared.shifted_categories == ("tea",) and shared.regime_shift == (-0.3, 0.4)
    assert shared.centres("tea") == pytest.approx((shared.mu_global + 0.4, shared.mu_a - 0.3))
    assert shared.centres("coffee") == (shared.mu_global, shared.mu_a)
    every = replace(base, meta={**base.meta, "regime_shift": {"intercept": -0.3, "log_elasticity": 0.4,
                                                                "categories": ["coffee", "tea"]}})  # fmt: skip
    folded = SharedParameters.from_posterior(every)  # already in the shared levels
    assert folded.shifted_categories is None and folded.centres("tea") == (folded.mu_global, folded.mu_a)
    old = replace(base, meta={**base.meta, "regime_shift": {"intercept": -0.3, "log_elasticity": 0.4}})
    assert SharedParameters.from_posterior(old).shifted_categories is None  # before categories were listed


@pytest.mark.slow
def test_a_category_refitted_alone_after_a_change_fits_its_own_shift():
    """Fan-out refits after a detected change: the shared levels are the new regime's, the
    category's own parameters too, and the old regime's outcomes sit a fitted shift away."""
    import math

    from pricing.fanout import SharedParameters, category_model

    rng = np.random.default_rng(3)
    e_before, e_after, a_sku = 1.2, 2.0, {"K0": -1.0, "K1": -0.6, "K2": -1.3}
    records = []
    for after, trials in ((False, 800), (True, 300)):
        for sku, a in a_sku.items():
            for ratio in (0.7, 0.85, 1.0, 1.15, 1.3):
                e = e_after if after else e_before
                eta = a + (-0.3 if after else 0.0) - e * math.log(ratio)
                k = int(rng.binomial(trials, 1 / (1 + math.exp(-eta))))
                records.append(CellRecord("s0", sku, "tea", ratio, "", trials, k,
                                          weight=1.0 if after else 0.25, regime=after))  # fmt: skip
    cells = Cells.from_records(records)
    shared = SharedParameters(mu_global=math.log(1.5), sd_cat=0.5, sd_seg=0.3, mu_a=-1.2, sd_a_sku=0.5,
                              a_seg={"s0": 0.0}, regime_shift=(-0.2, 0.3))  # fmt: skip
    model = category_model(shared, sampler_config={"draws": 300, "tune": 300, "chains": 2, "method": "nuts",
                                                   "random_seed": 4, "retry_target_accept": None,
                                                   "max_draws": 0})  # fmt: skip
    model.fit(cells)
    draws = model.category_draws(300, cells)
    elasticity = float(np.exp(draws.log_e[:, 0]).mean())
    assert abs(elasticity - e_after) < 0.25, elasticity  # without the shift: about 1.65
    shift = model.idata_.posterior["regime_shift_e"].values.mean()
    assert 0.2 < shift < 0.8  # log(2.0 / 1.2) = 0.51


# ---- CUSUM over refits --------------------------------------------------------------


@pytest.mark.parametrize(("k", "step"), [(0.5, 1.0), (1.0, 1.0), (1.0, 0.25)])
def test_the_cusum_threshold_gives_the_promised_false_alarm_rate_per_day(k, step):
    """Four one-sided charts (level and slope, both signs) of N(0, 1) surprises: the mean
    number of days to a false alarm matches 1 / alpha (Siegmund's approximation), whether
    a step is a day or a quarter of one (a service refitting every six hours)."""
    from pricing.changes import Cusum, cusum_threshold

    alpha = 0.01
    h = cusum_threshold(alpha, k, step=step)
    assert cusum_threshold(0.001, k, step=step) > h > cusum_threshold(0.05, k, step=step)
    rng = np.random.default_rng(0)
    runs, steps = 4000, int(2000 / step)
    upper, lower = np.zeros((runs, 2)), np.zeros((runs, 2))
    alarm = np.full(runs, np.inf)
    root = np.sqrt(step)
    for t in range(steps):
        z = rng.standard_normal((runs, 2))
        upper = np.maximum(0.0, upper + root * z - k * step)
        lower = np.maximum(0.0, lower - root * z - k * step)
        fired = (np.maximum(upper, lower).max(axis=1) > h) & np.isinf(alarm)
        alarm[fired] = (t + 1) * step
    assert np.isfinite(alarm).mean() > 0.99
    days = alarm[np.isfinite(alarm)].mean()
    assert 0.75 / alpha < days < 1.35 / alpha, days
    # Cusum.step is the same recursion.
    charts, found = Cusum().step(np.array([2.0, -1.0]), "a", k, h, days=step)
    assert found is None
    assert charts.upper == pytest.approx((max(0.0, root * 2.0 - k * step), 0.0))
    assert charts.lower == pytest.approx((0.0, max(0.0, root * 1.0 - k * step)))


def test_the_daily_threshold_at_quarter_day_steps_would_break_the_promise():
    """The overshoot correction matters: quarter-day steps held to the daily ``h`` alarm
    far more often than once in 1 / alpha days."""
    from pricing.changes import cusum_threshold

    alpha, k, step = 0.01, 1.0, 0.25
    assert cusum_threshold(alpha, k, step=step) > cusum_threshold(alpha, k) + 0.5
    h = cusum_threshold(alpha, k)
    rng = np.random.default_rng(1)
    runs = 2000
    upper, lower = np.zeros((runs, 2)), np.zeros((runs, 2))
    alarm = np.full(runs, np.inf)
    for t in range(int(400 / step)):
        z = rng.standard_normal((runs, 2))
        upper = np.maximum(0.0, upper + 0.5 * z - k * step)
        lower = np.maximum(0.0, lower - 0.5 * z - k * step)
        alarm[(np.maximum(upper, lower).max(axis=1) > h) & np.isinf(alarm)] = (t + 1) * step
    assert alarm[np.isfinite(alarm)].mean() < 0.5 / alpha


@pytest.mark.parametrize("shift", [2.0, 3.0])
def test_the_cusum_delay_approximation_matches_a_simulation(shift):
    from pricing.changes import ChangeDetection, cusum_delay

    detection = ChangeDetection(cusum=True)
    k, h = detection.cusum_k, detection.cusum_h
    rng = np.random.default_rng(2)
    chart, found = np.zeros(4000), np.full(4000, np.inf)
    for day in range(60):
        chart = np.maximum(0.0, chart + rng.standard_normal(4000) + shift - k)
        found[(chart > h) & np.isinf(found)] = day + 1
    assert np.isfinite(found).all()
    assert cusum_delay(shift, k, h) == pytest.approx(found.mean(), rel=0.15)
    # The default allowance finds a shift of 2 or 3 a day sooner than k = 0.5 did.
    old = ChangeDetection(cusum=True, cusum_k=0.5)
    assert cusum_delay(shift, k, h) < cusum_delay(shift, 0.5, old.cusum_h) - 0.5
    with pytest.raises(ValueError):
        cusum_delay(-1.0, k, h)


def test_the_budget_is_spent_per_day_of_data():
    detection = ChangeDetection(cusum=True)
    assert detection.window(1.0)[0] == detection.test_alpha == 5e-4
    assert detection.window(0.25)[0] == pytest.approx(1.25e-4)
    assert detection.window(3.0) == detection.window(1.0)  # one test, at the daily level
    assert detection.window(0.25)[1] > detection.cusum_h == detection.window(2.0)[1]
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            detection.window(bad)


def test_a_cusum_finds_a_repeated_moderate_surprise_and_dates_it_to_its_start():
    from pricing.changes import Cusum

    detection = ChangeDetection(cusum=True)
    h, k = detection.cusum_h, detection.cusum_k
    assert detection.test_alpha == 5e-4 and ChangeDetection().test_alpha == 1e-3
    assert (k, round(h, 2)) == (1.0, 3.67)
    charts, found = Cusum(), None
    # Noise first (the chart returns to 0), then z = -2.5 each day from 2026-11-03 on: the
    # single test (|z| > 3.9 or so) would need luck; the lower level chart climbs 1.5 a day.
    days = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]
    surprises = [np.array([0.8, -0.3]), np.array([-0.2, 0.1])] + [np.array([-2.5, 0.2])] * 4
    for day, z in zip(days, surprises, strict=True):
        charts, found = charts.step(z, day, k, h)
        if found:
            assert day == "2026-11-05" and found == "2026-11-03"
            break
    assert found == "2026-11-03" and charts == Cusum()
    # Four quarter-day windows of the same surprise move the chart as that one day did.
    quarter, found = Cusum(), None
    for window in range(8):
        quarter, found = quarter.step(np.array([-2.5 / 2]), f"q{window}", k, h, days=0.25)
        if window == 3:
            assert quarter.lower[0] == pytest.approx(1.5)
    assert found is None and quarter.lower[0] == pytest.approx(3.0)
    # A one-off spike below the threshold fades; a window without a slope leaves that chart.
    charts, found = Cusum().step(np.array([3.0]), "a", k, h)
    assert found is None and charts.upper[0] == pytest.approx(2.0) and charts.starts[0] == "a"
    charts, found = charts.step(np.array([0.0, 0.0]), "b", k, h)
    assert found is None and charts.upper == (1.0, 0.0)
    charts, found = charts.step(np.array([-1.0, 0.0]), "e", k, h)
    assert charts.upper[0] == 0.0 and charts.starts[0] is None
    assert Cusum.from_dict(charts.to_dict()) == charts
    assert Cusum.from_dict(None) == Cusum() and Cusum.from_dict({"upper": [1]}) == Cusum()
    with pytest.raises(ValueError):
        Cusum().step(np.array([1.0]), "x", k, h, days=0.0)


def test_a_detection_is_dated_to_the_start_of_an_excursion_in_its_direction():
    from pricing.changes import DATING_MIN_CHART, Cusum

    k, h = 1.0, ChangeDetection(cusum=True).cusum_h
    # Day 10: the shift shows (-3.6), just short of the single test; the lower level chart
    # climbs to 2.6. Day 11: the test fires on a window of -4.5.
    charts, found = Cusum().step(np.array([0.4, -0.2]), "d09", k, h)
    charts, found = charts.step(np.array([-3.6, 0.5]), "d10", k, h)
    assert found is None and charts.lower[0] == pytest.approx(2.6) and charts.starts[2] == "d10"
    assert charts.excursion_start(np.array([-4.5, 0.3]), "d11") == "d10"
    # A window moving the other way, or hardly at all, keeps its own day.
    assert charts.excursion_start(np.array([4.5, 0.3]), "d11") == "d11"
    assert charts.excursion_start(np.array([-1.5, 0.3]), "d11") == "d11"
    assert charts.excursion_start(np.array([np.nan]), "d11") == "d11"
    # A chart idling just above 0 does not date a change back.
    idle = Cusum(lower=(DATING_MIN_CHART / 2, 0.0), starts=(None, None, "d01", None))
    assert idle.excursion_start(np.array([-5.0]), "d11") == "d11"
    # The slope's chart dates it when the slope moved; the earliest qualifying start wins.
    both = Cusum(upper=(0.0, 1.5), lower=(2.0, 0.0), starts=(None, "d08", "d10", None))
    assert both.excursion_start(np.array([-3.0, 2.5]), "d11") == "d08"
    assert both.excursion_start(np.array([-3.0, -2.5]), "d11") == "d10"
    assert Cusum().excursion_start(np.array([-6.0, 6.0]), "d11") == "d11"
    # The setting decides whether a detection is dated back at all.
    z = np.array([-4.5, 0.3])
    assert ChangeDetection(cusum=True, cusum_dating=True).detection_label(charts, z, "d11") == "d10"
    assert ChangeDetection(cusum=True).detection_label(charts, z, "d11") == "d11"
    assert ChangeDetection(cusum=True, cusum_dating=True).detection_label(None, z, "d11") == "d11"


def _category_cells(posterior, rng, shifted, trials, intercept_shift, segments):
    draw = int(rng.integers(posterior.n_draws))
    records = []
    for segment in segments:
        for sku, category in posterior.sku_category.items():
            intercept, slope = posterior.logit_terms(segment, sku, category)
            for ratio in RATIOS:
                eta = (intercept[draw] + (intercept_shift if category in shifted else 0.0)
                       + slope[draw] * np.log(ratio))  # fmt: skip
                records.append(CellRecord(segment, sku, category, ratio, "", trials,
                                          int(rng.binomial(trials, 1.0 / (1.0 + np.exp(-eta))))))  # fmt: skip
    return Cells.from_records(records)


def test_a_shift_in_one_category_shows_where_it_happened():
    """A sale in one aisle: every block of that category moves a little; pooled over the
    whole market the surprise is diluted by the category that did not move. The
    per-category surprise is reported (where the change shows), not tested."""
    segments = tuple(f"s{i}" for i in range(8))
    posterior = two_category_posterior(segments)
    rng = np.random.default_rng(5)
    found = [predictive_check(posterior, _category_cells(posterior, rng, ("coffee",), 100, -0.25, segments))
             for _ in range(40)]  # fmt: skip
    assert all(t.categories == ("coffee", "tea") for t in found)
    coffee = np.mean([abs(t.category_z[0, 0]) for t in found])
    tea = np.mean([abs(t.category_z[1, 0]) for t in found])
    pooled = np.mean([abs(t.pooled_z[0]) for t in found])
    assert coffee > pooled > tea
    assert found[0].to_dict()["worst_category"] == "coffee"
    assert np.mean([t.detected for t in found]) >= 0.5


def test_after_a_detection_only_the_categories_that_moved_start_a_new_regime():
    """The screen after a detection: a sale in coffee alone marks coffee; a shift across
    the store marks every category (None), as does a change seen only pooled."""
    segments = tuple(f"s{i}" for i in range(8))
    posterior = two_category_posterior(segments)
    rng = np.random.default_rng(11)
    one = [t for t in (predictive_check(posterior, _category_cells(posterior, rng, ("coffee",), 200, -0.4, segments))
                       for _ in range(20)) if t.detected]  # fmt: skip
    both = [t for t in (predictive_check(posterior, _category_cells(posterior, rng, ("coffee", "tea"), 200, -0.4,
                                                                     segments))
                        for _ in range(20)) if t.detected]  # fmt: skip
    assert len(one) >= 15 and len(both) >= 15
    assert np.mean([t.moved_categories() == ("coffee",) for t in one]) >= 0.8
    assert np.mean([t.moved_categories() is None for t in both]) >= 0.8
    # Nothing shows in any category alone: every category (a market-wide reading).
    quiet = ChangeTest((), np.zeros(0), np.zeros(0), np.ones(0), np.zeros(0), 0.0, 1e-4, True,
                       np.array([-3.0]), ("coffee", "tea"), np.array([[-1.2, np.nan], [-1.0, 0.5]]))  # fmt: skip
    assert quiet.moved_categories() is None
    # ... unless it sits in one (segment, category) block: that block's category.
    blocks = (("s0", "coffee"), ("s0", "tea"), ("s1", "coffee"), ("s1", "tea"))
    one_block = ChangeTest(blocks, np.array([50.0, 100.0, 100.0, 100.0]), np.full(4, 100.0), np.full(4, 64.0),
                           np.full(4, np.nan), 39.1, 1e-4, True, np.array([-3.0]), ("coffee", "tea"),
                           np.array([[-1.9, np.nan], [0.0, np.nan]]))  # fmt: skip
    assert one_block.moved_categories() == ("coffee",)
    assert ChangeTest((), np.zeros(0), np.zeros(0), np.ones(0), np.zeros(0), 0.0, 1e-4, True).moved_categories() is None
    with pytest.raises(ValueError, match="alpha"):
        quiet.moved_categories(alpha=0.0)


def test_change_points_carry_each_category_s_own_start():
    points = ChangePoints[int]()
    assert not points and points.start("tea") is None
    tea = points.moved(10, ("tea",))
    assert tea and tea.start("tea") == 10 and tea.start("coffee") is None
    everything = tea.moved(14, None)  # a later market-wide change resets every category
    assert everything.start("tea") == 14 and everything.start("coffee") == 14 and not everything.by_category
    later = everything.moved(20, ("coffee",))
    assert later.start("coffee") == 20 and later.start("tea") == 14 and later.start("juice") == 14
