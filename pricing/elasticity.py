"""Price elasticity from sales history: a Bayesian two-way fixed-effects log-log model.

log(units[i]) = α[unit(i)] + τ[period(i)] + β[seg(i)] · log(price[i]) + ε[i],  ε ~ Normal(0, σ)

where a *unit* is a (segment, SKU) pair. β is pooled (one elasticity) or hierarchical by
segment (β[s] ~ Normal(μ_β, σ_β)).

The fixed effects α and τ are absorbed exactly, not sampled: with flat priors on them,
the posterior of (β, σ) equals that of the regression of the two-way demeaned log units
on the demeaned log prices (Frisch-Waugh-Lovell), with the likelihood's degrees of
freedom reduced by the number of absorbed effects. So the sampler sees a handful of
parameters whatever the size of the panel, and with weak priors and pooled β the
posterior mean matches the two-way fixed-effects OLS slope.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pymc as pm
from numpy.typing import NDArray

__all__ = ["HistoryFit", "demean_two_way", "fit_history", "fixed_effects_ols"]

FloatArray = NDArray[np.float64]


def demean_two_way(
    values: FloatArray,
    unit: NDArray[np.int64],
    period: NDArray[np.int64],
    *,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> FloatArray:
    """Remove unit and period means by alternating projections (exact for unbalanced panels).

    Parameters
    ----------
    values : ndarray, shape (n,) or (n, k)
        Columns to demean.
    unit, period : ndarray of int, shape (n,)
        Group codes (0-based).

    Returns
    -------
    ndarray, same shape as ``values``
        Residuals of the projection on unit and period dummies.
    """
    x = np.array(values, dtype=float, copy=True)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[:, None]
    n_units, n_periods = int(unit.max()) + 1, int(period.max()) + 1
    unit_n = np.bincount(unit, minlength=n_units)[:, None]
    period_n = np.bincount(period, minlength=n_periods)[:, None]
    for _ in range(max_iter):
        u_mean = np.zeros((n_units, x.shape[1]))
        np.add.at(u_mean, unit, x)
        x -= (u_mean / unit_n)[unit]
        p_mean = np.zeros((n_periods, x.shape[1]))
        np.add.at(p_mean, period, x)
        shift = (p_mean / period_n)[period]
        x -= shift
        if np.abs(shift).max() < tol:
            break
    out: FloatArray = x[:, 0] if squeeze else x
    return out


def fixed_effects_ols(
    log_units: FloatArray, log_price: FloatArray, unit: NDArray[np.int64], period: NDArray[np.int64]
) -> float:
    """Two-way fixed-effects OLS slope of log units on log price (the classical estimate)."""
    y = demean_two_way(log_units, unit, period)
    x = demean_two_way(log_price, unit, period)
    return float(np.dot(x, y) / np.dot(x, x))


@dataclass(frozen=True)
class HistoryFit:
    """Posterior summary of the elasticity model.

    Attributes
    ----------
    kind : {"pooled", "hierarchical"}
    elasticity : dict
        ``{"mean", "lower", "upper"}`` (90% interval) of β (pooled) or μ_β (hierarchical).
    by_segment : dict
        Segment → ``{"mean", "lower", "upper"}`` (hierarchical only).
    log_elasticity : tuple of float
        Posterior mean and sd of log(-β) (or log(-μ_β)), for use as a prior.
    segment_sd : float or None
        Posterior mean of σ_β / |μ_β| (relative spread between segments), hierarchical only.
    rows, units, periods : int
        Data used.
    ols : float
        Two-way fixed-effects OLS slope on the same data.
    diagnostics : dict
        max R-hat, min bulk ESS, divergences, seconds.
    """

    kind: str
    elasticity: dict[str, float]
    by_segment: dict[str, dict[str, float]]
    log_elasticity: tuple[float, float] | None
    segment_sd: float | None
    rows: int
    units: int
    periods: int
    ols: float
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _interval(draws: FloatArray, prob: float = 0.9) -> dict[str, float]:
    lo, hi = np.quantile(draws, [(1 - prob) / 2, 1 - (1 - prob) / 2])
    return {"mean": float(draws.mean()), "lower": float(lo), "upper": float(hi)}


def fit_history(
    segment: NDArray[np.str_],
    sku: NDArray[np.str_],
    period: NDArray[np.str_],
    price: FloatArray,
    units: FloatArray,
    *,
    elasticity: Literal["pooled", "hierarchical"] = "pooled",
    prior_sd: float = 10.0,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    random_seed: int = 0,
    progressbar: bool = False,
) -> HistoryFit:
    """Fit the log-log elasticity model to a sales panel.

    Parameters
    ----------
    segment, sku, period : ndarray of str, shape (n,)
    price : ndarray, shape (n,)
        Prices (> 0, any currency unit; the slope is unit-free).
    units : ndarray, shape (n,)
        Units sold (> 0).
    elasticity : {"pooled", "hierarchical"}
        One β, or β by segment partially pooled.
    prior_sd : float
        Scale of the weak Normal(0, prior_sd) prior on β (or μ_β).

    Returns
    -------
    HistoryFit
    """
    if elasticity not in ("pooled", "hierarchical"):
        raise ValueError(f"elasticity must be 'pooled' or 'hierarchical', got {elasticity!r}")
    if (price <= 0).any() or (units <= 0).any():
        raise ValueError("prices and units must be positive")
    unit_labels = np.char.add(np.char.add(segment.astype(str), "\x1f"), sku.astype(str))
    _, unit_idx = np.unique(unit_labels, return_inverse=True)
    _, period_idx = np.unique(period, return_inverse=True)
    segments, seg_idx = np.unique(segment, return_inverse=True)
    log_units, log_price = np.log(units), np.log(price)
    n, n_units, n_periods = len(units), int(unit_idx.max()) + 1, int(period_idx.max()) + 1
    absorbed = n_units + n_periods - 1
    if n - absorbed < 3:
        raise ValueError(f"{n} rows cannot identify {absorbed} fixed effects plus an elasticity")
    y = demean_two_way(log_units, unit_idx, period_idx)
    if elasticity == "pooled":
        x = demean_two_way(log_price, unit_idx, period_idx)[:, None]
    else:
        columns = np.zeros((n, len(segments)))
        columns[np.arange(n), seg_idx] = log_price
        x = demean_two_way(columns, unit_idx, period_idx)
    if not (np.abs(x).sum(axis=0) > 1e-9).all():
        raise ValueError("prices never vary within a unit: the elasticity is not identified")
    ols = fixed_effects_ols(log_units, log_price, unit_idx, period_idx)
    y_scale = float(np.std(y)) or 1.0

    start = time.perf_counter()
    with pm.Model(coords={"segment": segments.tolist()}):
        sigma = pm.HalfNormal("sigma", sigma=10.0 * y_scale)
        if elasticity == "pooled":
            beta = pm.Normal("beta", 0.0, prior_sd)
            mean = x[:, 0] * beta
        else:
            mu_beta = pm.Normal("mu_beta", 0.0, prior_sd)
            sd_beta = pm.HalfNormal("sd_beta", 1.0)
            z = pm.Normal("beta_z", 0.0, 1.0, dims="segment")
            beta = pm.Deterministic("beta", mu_beta + sd_beta * z, dims="segment")
            mean = pm.math.dot(x, beta)
        pm.Normal("log_units", mu=mean, sigma=sigma, observed=y)
        # The demeaned data live in an (n - absorbed)-dimensional space: give back the
        # degrees of freedom the fixed effects used (exact under flat priors on them).
        pm.Potential("absorbed_dof", absorbed * pm.math.log(sigma))
        from pricing.demand import compiling, fit_mode

        # One compiling fit per process, on the C VM whatever PyTensor's default mode
        # resolves to (pricing.demand.compiling).
        with compiling():
            mode = fit_mode()
            idata = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                              progressbar=progressbar, target_accept=0.99 if elasticity == "hierarchical" else 0.9,
                              compute_convergence_checks=False,
                              compile_kwargs={"mode": mode} if mode is not None else None)  # fmt: skip
    seconds = time.perf_counter() - start

    import arviz as az

    post = idata.posterior
    diagnostics = {
        # Per variable (``to_array`` would broadcast every variable to the union of dims).
        "max_rhat": max(float(v.max()) for v in az.rhat(idata).data_vars.values()),
        "min_ess_bulk": min(float(v.min()) for v in az.ess(idata, method="bulk").data_vars.values()),
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "seconds": seconds,
    }
    if elasticity == "pooled":
        headline = post["beta"].values.reshape(-1)
        by_segment: dict[str, dict[str, float]] = {}
        segment_sd = None
    else:
        headline = post["mu_beta"].values.reshape(-1)
        beta_draws = post["beta"].values.reshape(-1, len(segments))
        by_segment = {str(s): _interval(beta_draws[:, i]) for i, s in enumerate(segments)}
        rel = post["sd_beta"].values.reshape(-1) / np.maximum(np.abs(headline), 1e-6)
        segment_sd = float(rel.mean())
    log_elasticity = None
    if (headline < 0).mean() > 0.99:
        log_e = np.log(-headline[headline < 0])
        log_elasticity = (float(log_e.mean()), float(log_e.std()))
    return HistoryFit(
        kind=elasticity, elasticity=_interval(headline), by_segment=by_segment,
        log_elasticity=log_elasticity, segment_sd=segment_sd, rows=n, units=n_units,
        periods=n_periods, ols=ols, diagnostics=diagnostics,
    )  # fmt: skip


def conversion_prior(fit: HistoryFit, *, widen: float = 2.0) -> dict[str, Any]:
    """Model-config overrides for :class:`pricing.demand.DemandModel` from a history fit.

    The log-log slope β is the elasticity of units; the conversion model's b is a logit
    slope, whose elasticity is b·(1 - P), close to b at the low conversion rates of
    retail. The prior on log(-b) is centred on log(-β) and ``widen`` times as wide as its
    posterior, to stay honest about that approximation.

    Raises
    ------
    ValueError
        If the history does not show demand falling with price (β < 0 with 99% probability).
    """
    if fit.log_elasticity is None:
        raise ValueError(
            f"history elasticity {fit.elasticity['mean']:.3f} is not clearly negative; no prior derived"
        )
    mu, sd = fit.log_elasticity
    out: dict[str, Any] = {
        "log_elasticity_mu": {"dist": "Normal", "mu": mu, "sigma": max(widen * sd, 0.05)}
    }
    if fit.segment_sd is not None and math.isfinite(fit.segment_sd):
        out["log_elasticity_segment_sd"] = {
            "dist": "HalfNormal",
            "sigma": max(widen * fit.segment_sd, 0.05),
        }
    return out
