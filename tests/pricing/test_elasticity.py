import numpy as np
import pytest

from pricing.elasticity import conversion_prior, demean_two_way, fit_history, fixed_effects_ols


def panel(seed=1, elasticities=None, n_skus=12, n_periods=16, noise=0.2):
    """A synthetic sales panel with known elasticity per segment."""
    elasticities = elasticities or {"a": -1.5}
    rng = np.random.default_rng(seed)
    rows = []
    for segment, beta in elasticities.items():
        for k in range(n_skus):
            alpha, base = rng.normal(3, 0.5), rng.uniform(5, 20)
            for t in range(n_periods):
                price = base * np.exp(rng.normal(0, 0.15))
                units = np.exp(
                    alpha + 0.1 * np.sin(t) + beta * np.log(price) + rng.normal(0, noise)
                )
                rows.append((segment, f"s{k}", f"2026-W{t:02d}", price, units))
    seg, sku, period, price, units = map(np.array, zip(*rows, strict=True))
    return seg, sku, period, price.astype(float), units.astype(float)


def test_two_way_demeaning_removes_unit_and_period_effects():
    rng = np.random.default_rng(0)
    unit = rng.integers(0, 5, 200)
    period = rng.integers(0, 7, 200)
    effects = rng.normal(size=5)[unit] + rng.normal(size=7)[period]
    residual = demean_two_way(effects, unit, period)
    np.testing.assert_allclose(residual, 0, atol=1e-9)


def test_pooled_posterior_mean_agrees_with_fixed_effects_ols_and_covers_the_truth():
    data = panel(seed=1, elasticities={"a": -1.5, "b": -1.5})
    fit = fit_history(*data, elasticity="pooled")
    assert fit.elasticity["mean"] == pytest.approx(fit.ols, abs=0.01)
    assert fit.elasticity["lower"] < -1.5 < fit.elasticity["upper"]
    assert fit.rows == len(data[0]) and fit.units == 24 and fit.periods == 16
    assert fit.diagnostics["divergences"] == 0 and fit.diagnostics["max_rhat"] < 1.01


def test_fixed_effects_ols_ignores_level_differences_between_units():
    seg, sku, period, price, units = panel(seed=2, noise=0.01)
    _, unit = np.unique(np.char.add(seg, sku), return_inverse=True)
    _, t = np.unique(period, return_inverse=True)
    assert fixed_effects_ols(np.log(units), np.log(price), unit, t) == pytest.approx(-1.5, abs=0.05)


@pytest.mark.slow
def test_hierarchical_elasticities_by_segment():
    truth = {"a": -1.0, "b": -1.5, "c": -2.0, "d": -2.5}
    # 2 x 500 draws: four means and intervals need no more (the default 1,000 doubled the time).
    fit = fit_history(*panel(seed=3, elasticities=truth, noise=0.1), elasticity="hierarchical",
                      draws=500, tune=500)
    assert set(fit.by_segment) == set(truth)
    covered = sum(
        fit.by_segment[s]["lower"] < b < fit.by_segment[s]["upper"] for s, b in truth.items()
    )
    assert covered >= 3
    means = [fit.by_segment[s]["mean"] for s in "abcd"]
    assert means == sorted(means, reverse=True)
    prior = conversion_prior(fit)
    assert prior["log_elasticity_mu"]["mu"] == pytest.approx(np.log(1.75), abs=0.3)
    assert "log_elasticity_segment_sd" in prior


def test_no_prior_from_history_where_demand_does_not_fall_with_price():
    fit = fit_history(*panel(seed=4, elasticities={"a": 0.3}), elasticity="pooled")
    with pytest.raises(ValueError, match="not clearly negative"):
        conversion_prior(fit)


def test_unidentified_panels_are_refused():
    seg, sku, period, price, units = panel(seed=5)
    with pytest.raises(ValueError, match="positive"):
        fit_history(seg, sku, period, -price, units)
    with pytest.raises(ValueError, match="elasticity must be"):
        fit_history(seg, sku, period, price, units, elasticity="bogus")  # type: ignore[arg-type]
    constant = np.full_like(price, 9.99)
    with pytest.raises(ValueError, match="not identified"):
        fit_history(seg, sku, period, constant, units)
