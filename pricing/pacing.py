"""Budget pacing: LP-based Thompson sampling (Ferreira, Simchi-Levi & Wang, 2018).

A campaign has a budget B to spend by its end date. Each decision samples one posterior
draw d and solves, for that draw, the linear programme

    maximise    Σ_a x_a r_d(a)
    subject to  Σ_a x_a s_dm(a) ≤ c_m      for every paced budget m
                Σ_a x_a = 1,  x ≥ 0

where r_d(a) is the expected profit of candidate a, s_dm(a) its expected spend of budget m
per decision and c_m = remaining budget / expected remaining eligible decisions (the
"TS-update" variant, which re-divides what is left at every step). The served candidate is
drawn from x^(d). The probability of serving a is therefore exactly

    π(a) = (1 − ε) Σ_d w_d x^(d)_a + ε / n,

which :func:`lp_choice_probabilities` computes over every draw, as off-policy evaluation
needs.

With one budget (the common case) the LP has a closed form: the optimum either serves the
best candidate whose spend fits, or mixes one candidate under the rate with one above it
(an LP with two equality-type constraints has a basic solution with at most two non-zero
entries). :func:`lp_mixture` evaluates that form for all draws at once in NumPy; with
several budgets it calls :func:`scipy.optimize.linprog` (HiGHS) per draw. The test suite
checks the closed form against ``linprog``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pricing.thompson import sample

__all__ = [
    "PacedChoice",
    "choose_paced",
    "lp_choice_probabilities",
    "lp_mixture",
    "pacing_rate",
    "spend_rate",
]

FloatArray = NDArray[np.float64]


def spend_rate(remaining_budget: float, remaining_decisions: float) -> float:
    """Budget per remaining eligible decision, the right-hand side c of the LP.

    Parameters
    ----------
    remaining_budget : float
        Budget left (money, any unit; ≤ 0 means exhausted).
    remaining_decisions : float
        Expected eligible decisions before the campaign ends (> 0).

    Returns
    -------
    float
        ``max(remaining_budget, 0) / remaining_decisions``; ``inf`` when no decision is expected
        (nothing left to pace), 0 when the budget is gone.
    """
    if remaining_decisions <= 0:
        return float("inf")
    return max(float(remaining_budget), 0.0) / float(remaining_decisions)


def pacing_rate(
    *,
    budget: float,
    spent: float,
    held: float,
    redemptions: int,
    settled_offers: int,
    eligible_visits: int,
    first_eligible_at: datetime | None,
    ends_at: datetime,
    now: datetime,
) -> float:
    """Expected spend allowed per eligible decision now (Ferreira et al.'s TS-update rate).

    Parameters
    ----------
    budget, spent, held : float
        The promotion's budget, settled spend and budget held by open offers (money).
    redemptions, settled_offers : int
        Open offers redeem at the share seen so far, Laplace-smoothed:
        ``(redemptions + 1) / (settled_offers + 2)`` of ``held`` counts as spent.
    eligible_visits : int
        Eligible decisions since ``first_eligible_at``: the traffic-rate estimate.
    ends_at, now : datetime
        End of the campaign and the present (UTC).

    Returns
    -------
    float
        Money per eligible decision; ``inf`` before any traffic (nothing to pace on yet).
    """
    if first_eligible_at is None or eligible_visits == 0:
        return float("inf")
    redeem_share = (redemptions + 1) / (settled_offers + 2)
    remaining = budget - spent - held * redeem_share
    seconds_left = (ends_at - now).total_seconds()
    elapsed = max((now - first_eligible_at).total_seconds(), 60.0)
    expected = eligible_visits / elapsed * max(seconds_left, 0.0)
    return spend_rate(remaining, max(expected, 1.0))


def _single_budget(reward: FloatArray, spend: FloatArray, rate: float) -> FloatArray:
    """Closed-form LP solution with one budget, for every draw. Shapes (D, n) -> (D, n)."""
    d, n = reward.shape
    x = np.zeros((d, n))
    rows = np.arange(d)
    low = spend <= rate
    pure_value = np.where(low, reward, -np.inf)
    pure = np.argmax(pure_value, axis=1)
    best_pure = pure_value[rows, pure]
    # Pairs (i under the rate, j above it): serve j with probability t so spend = rate.
    gap = spend[:, None, :] - spend[:, :, None]  # (D, i, j): s_j - s_i
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rate - spend)[:, :, None] / gap
        value = reward[:, :, None] + (reward[:, None, :] - reward[:, :, None]) * t
    valid = low[:, :, None] & ~low[:, None, :]
    value = np.where(valid, value, -np.inf)
    flat = np.argmax(value.reshape(d, n * n), axis=1)
    best_pair = value.reshape(d, n * n)[rows, flat]
    i, j = np.divmod(flat, n)
    feasible = np.isfinite(best_pure)
    tolerance = 1e-12 * np.maximum(1.0, np.abs(np.where(feasible, best_pure, 0.0)))
    mix = feasible & (best_pair > np.where(feasible, best_pure, 0.0) + tolerance)
    # A draw where no candidate fits the rate (impossible with a zero-spend candidate):
    # the cheapest candidate is the closest one can get.
    cheapest = np.argmin(spend, axis=1)
    serve_pure = feasible & ~mix
    x[rows[serve_pure], pure[serve_pure]] = 1.0
    x[rows[~feasible], cheapest[~feasible]] = 1.0
    m = rows[mix]
    tj = t[m, i[m], j[m]]
    x[m, i[m]] = 1.0 - tj
    x[m, j[m]] += tj
    return x


def _linprog_budgets(reward: FloatArray, spend: FloatArray, rates: FloatArray) -> FloatArray:
    """LP per draw with several budgets (HiGHS). Shapes (D, n), (D, n, m), (m,) -> (D, n)."""
    # Imported here: importing pacing_rate stays light (the writer process never solves).
    from scipy.optimize import linprog

    d, n = reward.shape
    x = np.zeros((d, n))
    for k in range(d):
        result = linprog(
            -reward[k],
            A_ub=spend[k].T,
            b_ub=rates,
            A_eq=np.ones((1, n)),
            b_eq=[1.0],
            bounds=(0, None),
            method="highs",
        )
        if result.status == 0:
            x[k] = np.clip(result.x, 0.0, None)
            x[k] /= x[k].sum()
        else:  # infeasible: the least spending candidate (by total relative spend)
            x[k, int(np.argmin((spend[k] / np.maximum(rates, 1e-300)).sum(axis=1)))] = 1.0
    return x


def lp_mixture(
    reward: NDArray[np.floating[Any]],
    spend: NDArray[np.floating[Any]],
    rates: NDArray[np.floating[Any]] | float,
) -> FloatArray:
    """Solve the pacing LP for every posterior draw.

    Parameters
    ----------
    reward : ndarray, shape (D, n)
        Expected profit per decision of each candidate under each draw (money).
    spend : ndarray, shape (D, n) or (D, n, m)
        Expected spend of each budget per decision (same money unit as ``rates``).
    rates : float or ndarray, shape (m,)
        Budget per remaining decision for each budget (``inf`` = not binding).

    Returns
    -------
    ndarray, shape (D, n)
        Row d is the LP solution x^(d): non-negative, summing to 1. Ties go to the first
        candidate, so the result is a deterministic function of the inputs.
    """
    r = np.asarray(reward, dtype=np.float64)
    s = np.asarray(spend, dtype=np.float64)
    c = np.atleast_1d(np.asarray(rates, dtype=np.float64))
    if s.ndim == 2:
        s = s[:, :, None]
    if c.ndim != 1 or s.ndim != 3 or r.ndim != 2 or s.shape[:2] != r.shape or s.shape[2] != len(c):
        raise ValueError(
            f"reward (D, n), spend (D, n, m) and rates (m,) disagree: {r.shape}, {s.shape}, {c.shape}"
        )
    if (c < 0).any() or np.isnan(c).any():
        raise ValueError("rates must be non-negative")
    binding = np.isfinite(c)
    if not binding.any():
        x = np.zeros_like(r)
        x[np.arange(r.shape[0]), np.argmax(r, axis=1)] = 1.0
        return x
    s, c = s[:, :, binding], c[binding]
    # Candidates that never spend compete only through their best one per draw (any LP
    # solution using a worse zero-spend candidate is improved by swapping in the best),
    # so they collapse into one column: the pair search stays small whatever the ladder.
    free = ~(s > 0).any(axis=(0, 2))
    if free.sum() > 1:
        rows = np.arange(r.shape[0])
        free_idx = np.flatnonzero(free)
        best_free = free_idx[np.argmax(r[:, free], axis=1)]
        paid_idx = np.flatnonzero(~free)
        r_small = np.concatenate([r[rows, best_free][:, None], r[:, paid_idx]], axis=1)
        s_small = np.concatenate([np.zeros((r.shape[0], 1, len(c))), s[:, paid_idx]], axis=1)
        x_small = lp_mixture(r_small, s_small, c)
        x = np.zeros_like(r)
        x[rows, best_free] = x_small[:, 0]
        x[:, paid_idx] = x_small[:, 1:]
        return x
    if len(c) == 1:
        return _single_budget(r, s[:, :, 0], float(c[0]))
    return _linprog_budgets(r, s, c)


def lp_choice_probabilities(
    mixtures: FloatArray, weights: FloatArray, epsilon: float
) -> FloatArray:
    """Exact action distribution of ε-mixed LP Thompson sampling.

    Parameters
    ----------
    mixtures : ndarray, shape (D, n)
        LP solutions per draw (from :func:`lp_mixture`).
    weights : ndarray, shape (D,)
        Normalised draw weights.
    epsilon : float
        Exploration floor in [0, 1].

    Returns
    -------
    ndarray, shape (n,)
        Probabilities summing to 1.
    """
    n = mixtures.shape[1]
    greedy = weights @ mixtures
    out: FloatArray = (1.0 - epsilon) * greedy / greedy.sum() + epsilon / n
    return out


@dataclass(frozen=True)
class PacedChoice:
    """A paced decision: the candidate, its exact propensity, and the whole distribution."""

    index: int
    propensity: float
    probabilities: FloatArray
    explored: bool


def choose_paced(
    mixtures: FloatArray, weights: FloatArray, epsilon: float, rng: np.random.Generator
) -> PacedChoice:
    """One paced decision: a candidate drawn from the LP mixtures' marginal.

    Sampling a draw by weight and then a candidate from that draw's LP solution is the same
    random experiment as drawing a candidate from ``weights @ mixtures`` (normalised), which
    is how the quote path samples it (:func:`pricing.thompson.sample`).

    Parameters
    ----------
    mixtures : ndarray, shape (D, n)
    weights : ndarray, shape (D,)
    epsilon : float
    rng : numpy.random.Generator

    Returns
    -------
    PacedChoice
        With ``propensity`` equal to :func:`lp_choice_probabilities` at the chosen index.
    """
    choice = sample(lp_choice_probabilities(mixtures, weights, 0.0), epsilon, rng)
    return PacedChoice(choice.index, choice.propensity, choice.probabilities, choice.explored)
