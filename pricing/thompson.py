"""Thompson sampling on expected profit, with exact propensities.

For a line with candidate prices a_1..a_n (the guardrail ladder), each posterior draw d
gives an expected profit π_d(a) = P_d(buy | a) · (a − unit cost). Thompson sampling picks
a draw by its weight and serves that draw's argmax; with probability ε it serves a
uniformly random candidate instead. The probability of serving a is then exactly

    π(a) = (1 − ε) · Σ_d w_d · 1[argmax_a' π_d(a') = a] + ε / n,

computed over all draws (not estimated), which is what off-policy evaluation needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ThompsonChoice", "choice_probabilities", "choose", "greedy_probabilities", "sample"]


@dataclass(frozen=True)
class ThompsonChoice:
    """A chosen candidate and the probability the policy had of choosing it.

    Attributes
    ----------
    index : int
        Position of the chosen candidate.
    propensity : float
        Exact probability of that choice, in (0, 1].
    probabilities : ndarray, shape (n_candidates,)
        The whole action distribution (sums to 1).
    explored : bool
        True when the ε-uniform branch chose.
    """

    index: int
    propensity: float
    probabilities: NDArray[np.float64]
    explored: bool


def choice_probabilities(
    profit: NDArray[np.floating[Any]], weights: NDArray[np.float64], epsilon: float
) -> NDArray[np.float64]:
    """Exact action distribution of ε-mixed Thompson sampling.

    Parameters
    ----------
    profit : ndarray, shape (D, n)
        Expected profit of each candidate under each draw (any money unit).
    weights : ndarray, shape (D,)
        Normalised draw weights.
    epsilon : float
        Exploration floor in [0, 1].

    Returns
    -------
    ndarray, shape (n,)
        Probabilities summing to 1; ties within a draw go to the first (cheapest) candidate.
    """
    n = profit.shape[1]
    out: NDArray[np.float64] = (1.0 - epsilon) * greedy_probabilities(profit, weights) + epsilon / n
    return out


def greedy_probabilities(
    profit: NDArray[np.floating[Any]], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Probability that each candidate is the best one under a draw taken by weight.

    Parameters
    ----------
    profit : ndarray, shape (D, n)
        Expected profit of each candidate under each draw.
    weights : ndarray, shape (D,)
        Draw weights (need not be normalised).

    Returns
    -------
    ndarray, shape (n,)
        Sums to 1; ties within a draw go to the first (cheapest) candidate.
    """
    n = profit.shape[1]
    greedy = np.bincount(np.argmax(profit, axis=1), weights=weights, minlength=n)
    out: NDArray[np.float64] = greedy / greedy.sum()
    return out


def sample(
    greedy: NDArray[np.float64], epsilon: float, rng: np.random.Generator
) -> ThompsonChoice:
    """One ε-mixed decision from a line's greedy distribution, with its exact propensity.

    Drawing a posterior sample by weight and serving its argmax is the same random
    experiment as drawing a candidate from :func:`greedy_probabilities` (or, for a paced
    line, from the LP mixtures' marginal): this is the quote path's sampler once that
    distribution is known.

    Parameters
    ----------
    greedy : ndarray, shape (n,)
        Distribution before the exploration floor (sums to 1).
    epsilon : float
        Exploration floor in [0, 1].
    rng : numpy.random.Generator

    Returns
    -------
    ThompsonChoice
        ``propensity`` is ``(1 - ε) · greedy[i] + ε / n`` at the chosen ``i``.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    n = len(greedy)
    if n == 0:
        raise ValueError("greedy must have at least one candidate")
    explored = bool(rng.random() < epsilon)
    if explored:
        index = int(rng.integers(n))
    else:
        cdf = np.cumsum(greedy)
        # side="right": a candidate of probability 0 is never chosen.
        index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        if index >= n:  # u · total rounded up to the total: the last candidate that can win
            index = int(np.flatnonzero(greedy)[-1])
    probabilities: NDArray[np.float64] = (1.0 - epsilon) * greedy + epsilon / n
    return ThompsonChoice(index, float(probabilities[index]), probabilities, explored)


def choose(
    profit: NDArray[np.floating[Any]],
    weights: NDArray[np.float64],
    epsilon: float,
    rng: np.random.Generator,
    *,
    best: NDArray[np.intp] | None = None,
    cdf: NDArray[np.float64] | None = None,
) -> ThompsonChoice:
    """Draw one Thompson-sampling decision and report its exact propensity.

    Parameters
    ----------
    profit : ndarray, shape (D, n)
    weights : ndarray, shape (D,)
    epsilon : float
    rng : numpy.random.Generator
    best : ndarray of int, shape (D,), optional
        Precomputed argmax of ``profit`` per draw.
    cdf : ndarray, shape (D,), optional
        Precomputed cumulative weights.

    Returns
    -------
    ThompsonChoice
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    if profit.ndim != 2 or profit.shape[1] == 0 or profit.shape[0] != len(weights):
        raise ValueError(
            f"profit must have shape (D, n>0) with D = len(weights); got {profit.shape}"
        )
    n = profit.shape[1]
    if best is None:
        best = np.argmax(profit, axis=1)
    greedy = np.bincount(best, weights=weights, minlength=n)
    probabilities: NDArray[np.float64] = (1.0 - epsilon) * (greedy / greedy.sum()) + epsilon / n
    explored = bool(rng.random() < epsilon)
    if explored:
        index = int(rng.integers(n))
    else:
        if cdf is None:
            cdf = np.cumsum(weights)
        draw = min(
            int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(weights) - 1
        )
        index = int(best[draw])
    return ThompsonChoice(index, float(probabilities[index]), probabilities, explored)
