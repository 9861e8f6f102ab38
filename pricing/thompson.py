"""Thompson sampling on expected profit, with exact propensities.

For a line with candidate prices a_1..a_n (the guardrail ladder), each posterior draw d
gives an expected profit π_d(a) = P_d(buy | a) · (a − unit cost). Thompson sampling picks
a draw by its weight and serves that draw's argmax, with probability

    g(a) = Σ_d w_d · 1[argmax_a' π_d(a') = a].

Exploration spends a share ε of the decisions. A part c ≤ ε of it (the *floor*) is
spread uniformly over the n allowed candidates, so that every one of them keeps a
propensity of at least c / n and off-policy evaluation of any policy within the
guardrails stays supported; the rest, ε − c, goes to the *neighbours* of the Thompson
choice: a candidate drawn from g is replaced by one of the prices next to it on the
ladder (same promotion), where a wrong guess costs little. The probability of serving a
is exactly

    π(a) = (1 − ε) · g(a) + (ε − c) · Σ_b g(b) · 1[a ∈ N(b)] / |N(b)| + c / n,

computed over all draws (not estimated), which is what off-policy evaluation needs.
With c = ε this is the classic ε-uniform mixture.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ThompsonChoice",
    "choice_probabilities",
    "choose",
    "explore",
    "greedy_probabilities",
    "neighbour_spread",
    "sample",
]


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
    profit: NDArray[np.floating[Any]],
    weights: NDArray[np.float64],
    epsilon: float,
    *,
    floor: float | None = None,
    groups: NDArray[np.integer[Any]] | None = None,
) -> NDArray[np.float64]:
    """Exact action distribution of Thompson sampling with exploration (module docstring).

    Parameters
    ----------
    profit : ndarray, shape (D, n)
        Expected profit of each candidate under each draw (any money unit).
    weights : ndarray, shape (D,)
        Normalised draw weights.
    epsilon : float
        Share of exploration ε in [0, 1].
    floor : float, optional
        The part c of ε spread uniformly (each candidate gets at least c / n); the rest
        goes to ladder neighbours. None: c = ε (ε-uniform).
    groups : ndarray of int, shape (n,), optional
        Candidates with equal values form one price ladder (one promotion), in ascending
        price; neighbours never cross groups. None: one ladder.

    Returns
    -------
    ndarray, shape (n,)
        Probabilities summing to 1; ties within a draw go to the first (cheapest) candidate.
    """
    return explore(greedy_probabilities(profit, weights), epsilon, floor=floor, groups=groups)


def _split(epsilon: float, floor: float | None) -> tuple[float, float]:
    """(uniform share c, neighbour share ε − c) of an exploration share ε."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    uniform = epsilon if floor is None else min(float(floor), epsilon)
    if uniform < 0.0:
        raise ValueError(f"the propensity floor must be >= 0, got {floor}")
    return uniform, epsilon - uniform


def neighbour_spread(
    greedy: NDArray[np.float64], groups: NDArray[np.integer[Any]] | None = None
) -> NDArray[np.float64]:
    """Where a choice moved to a ladder neighbour lands: Σ_b g(b) · 1[a ∈ N(b)] / |N(b)|.

    Parameters
    ----------
    greedy : ndarray, shape (n,)
        Distribution of the Thompson choice b.
    groups : ndarray of int, shape (n,), optional
        Ladder of each candidate (ascending price within one); None: a single ladder.

    Returns
    -------
    ndarray, shape (n,)
        Sums to 1. A candidate's neighbours are the next cheaper and the next dearer price
        of its own ladder; a ladder of one price keeps its mass.
    """
    n = len(greedy)
    same = (np.ones(n - 1, dtype=bool) if groups is None
            else np.asarray(groups[1:]) == np.asarray(groups[:-1]))  # fmt: skip
    degree = np.zeros(n)
    degree[1:] += same  # a cheaper neighbour
    degree[:-1] += same  # a dearer neighbour
    alone = degree == 0
    share = np.where(alone, 0.0, greedy / np.where(alone, 1.0, degree))
    out = np.where(alone, greedy, 0.0)
    out[:-1] += np.where(same, share[1:], 0.0)  # from the dearer neighbour
    out[1:] += np.where(same, share[:-1], 0.0)  # from the cheaper neighbour
    result: NDArray[np.float64] = out
    return result


def explore(
    greedy: NDArray[np.float64],
    epsilon: float,
    *,
    floor: float | None = None,
    groups: NDArray[np.integer[Any]] | None = None,
) -> NDArray[np.float64]:
    """The served distribution π of a line whose Thompson choice has distribution ``greedy``.

    Parameters
    ----------
    greedy : ndarray, shape (n,)
        Sums to 1.
    epsilon, floor, groups
        As in :func:`choice_probabilities`.

    Returns
    -------
    ndarray, shape (n,)
        ``(1 − ε) · g + (ε − c) · neighbour_spread(g) + c / n``; every entry is at least
        ``c / n``.
    """
    uniform, local = _split(epsilon, floor)
    n = len(greedy)
    out: NDArray[np.float64] = (1.0 - epsilon) * greedy + uniform / n
    if local > 0.0:
        out = out + local * neighbour_spread(greedy, groups)
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
    greedy: NDArray[np.float64],
    epsilon: float,
    rng: np.random.Generator,
    *,
    floor: float | None = None,
    groups: NDArray[np.integer[Any]] | None = None,
    served: tuple[NDArray[np.float64], Sequence[float]] | None = None,
) -> ThompsonChoice:
    """One decision from a line's greedy distribution, with its exact propensity.

    Drawing a posterior sample by weight and serving its argmax is the same random
    experiment as drawing a candidate from :func:`greedy_probabilities` (or, for a paced
    line, from the LP mixtures' marginal): this is the quote path's sampler once that
    distribution is known. Exploration as in the module docstring: with probability c a
    uniformly random candidate, with probability ε − c a ladder neighbour of a Thompson
    choice, otherwise the Thompson choice.

    Parameters
    ----------
    greedy : ndarray, shape (n,)
        Distribution before exploration (sums to 1).
    epsilon : float
        Share of exploration in [0, 1].
    rng : numpy.random.Generator
    floor : float, optional
        The uniform part c of ``epsilon`` (None: all of it).
    groups : ndarray of int, shape (n,), optional
        Ladder of each candidate (see :func:`neighbour_spread`).
    served : tuple of (ndarray, sequence of float), optional
        ``(explore(greedy, ...), cumsum(greedy))`` when the caller keeps them per line (the
        quote path does, the CDF as a list): the same result, without recomputing them on
        every draw. The CDF is searched with :func:`bisect.bisect_right`, which keeps the
        GIL: ``numpy.searchsorted`` releases it, and on a worker's event loop each release
        waits up to the switch interval to take it back from a busy thread.

    Returns
    -------
    ThompsonChoice
        ``propensity`` is :func:`explore`'s probability of the chosen ``i``.
    """
    uniform, _ = _split(epsilon, floor)
    n = len(greedy)
    if n == 0:
        raise ValueError("greedy must have at least one candidate")
    u = rng.random()
    explored = bool(u < epsilon)
    if u < uniform:
        index = int(rng.integers(n))
    else:
        cdf = np.cumsum(greedy).tolist() if served is None else served[1]
        # Right of equal values: a candidate of probability 0 is never chosen.
        index = bisect.bisect_right(cdf, rng.random() * cdf[-1])
        if index >= n:  # u · total rounded up to the total: the last candidate that can win
            index = int(np.flatnonzero(greedy)[-1])
        if explored:  # the neighbour branch (u in [c, ε))
            index = _neighbour(index, n, groups, rng)
    probabilities = (explore(greedy, epsilon, floor=floor, groups=groups) if served is None
                     else served[0])  # fmt: skip
    return ThompsonChoice(index, float(probabilities[index]), probabilities, explored)


def _neighbour(
    index: int, n: int, groups: NDArray[np.integer[Any]] | None, rng: np.random.Generator
) -> int:
    """A uniformly chosen ladder neighbour of ``index`` (itself if its ladder has one price)."""
    options = [
        j for j in (index - 1, index + 1)
        if 0 <= j < n and (groups is None or groups[j] == groups[index])
    ]  # fmt: skip
    if not options:
        return index
    return options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]


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
