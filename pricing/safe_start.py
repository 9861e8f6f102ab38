"""Safe start: the engine never earns less than list prices would, beyond a set share.

A merchandiser switching the engine on should not see a loss first. Following the
conservative bandits of Kazerouni et al. (2017, "Conservative contextual linear
bandits"), the engine keeps, per SKU and in all, a budget of allowed loss: its
cumulative expected profit must stay at least ``(1 − α)`` times what the list price
would have earned on the same traffic, with high probability under the posterior.

For a line with candidates a (the reference, non-personalized price among them) and
posterior draws d, let ``Δ_d(a) = π_d(a) − π_d(ref)`` be a candidate's expected profit
over the reference's, and ``c(a)`` the lower-tail mean (the worst ``1 − confidence``
share of the posterior's mass) of ``Δ_d(a) + α · π_d(ref)``. The budget is the sum of
``c`` over the decisions served so far. A candidate the budget cannot afford
(``budget + c(a) < 0``, for the SKU or in all) is *blocked*: its probability moves to the
reference price, which adds ``α · (lower-tail mean of π(ref)) ≥ 0`` to the budget. So the
budget never goes negative, and while it is thin the engine still serves the candidates it
can afford (those close to list, or those the posterior is sure beat it).

Why the sum of per-decision tail means is safe: the lower-tail mean is super-additive (its
negative, expected shortfall, is a coherent risk measure), so the sum bounds the
lower-tail mean of the cumulative surplus, which is below its quantile: with posterior
probability at least ``confidence`` the cumulative expected profit is at least
``(1 − α)`` × the list price's. Which candidates are blocked depends only on the state
before the draw, so the served distribution is known exactly: the propensity logged is the
blocked-and-moved distribution's.

The budget lives in one worker's memory: with W workers each keeps its own share of the
promise, so the sum holds too; a restarted worker starts from zero (more caution, never
less).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SafetyBudget", "tail_mean"]

FloatArray = NDArray[np.float64]


def tail_mean(values: NDArray[np.floating[Any]], weights: FloatArray, share: float) -> FloatArray:
    """Weighted mean of the lowest ``share`` of the weight, per column.

    Parameters
    ----------
    values : ndarray, shape (D, n)
        A quantity per posterior draw (rows) and candidate (columns).
    weights : ndarray, shape (D,)
        Normalised draw weights.
    share : float
        Tail mass in (0, 1].

    Returns
    -------
    ndarray, shape (n,)
        For each column, the mean of its values over the lowest ``share`` of the weight
        (a draw straddling the boundary counts with the part of its weight inside).
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    order = np.argsort(values, axis=0)
    sorted_values = np.take_along_axis(np.asarray(values, dtype=np.float64), order, axis=0)
    w = np.asarray(weights, dtype=np.float64)[order]
    before = np.cumsum(w, axis=0) - w
    inside = np.clip(share - before, 0.0, w)
    out: FloatArray = (inside * sorted_values).sum(axis=0) / inside.sum(axis=0)
    return out


class SafetyBudget:
    """One worker's budgets of allowed loss against list prices (module docstring).

    Parameters
    ----------
    max_loss : float
        α: the share of the list price's expected profit the engine may fall short by
        (``PRICING_MAX_LOSS_VS_LIST``, e.g. 0.02).
    confidence : float
        Posterior probability with which the promise holds (the tail is ``1 − confidence``).
    """

    def __init__(self, max_loss: float, confidence: float = 0.9) -> None:
        if not 0.0 <= max_loss < 1.0:
            raise ValueError(f"max_loss must lie in [0, 1), got {max_loss}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        self.max_loss = max_loss
        self.confidence = confidence
        self._lock = threading.Lock()
        self._by_sku: dict[str, float] = {}
        self._total = 0.0
        #: Draws blocked and served the reference price instead.
        self.gated = 0

    def costs(
        self, profit: NDArray[np.floating[Any]], weights: FloatArray, reference: int
    ) -> FloatArray:
        """What serving each candidate adds to the budget, ``c(a)``, shape (n,).

        Parameters
        ----------
        profit : ndarray, shape (D, n)
            Expected profit per draw and candidate (money units of the budget).
        weights : ndarray, shape (D,)
        reference : int
            Column of the reference (non-personalized) candidate.
        """
        p = np.asarray(profit, dtype=np.float64)
        base = p[:, reference : reference + 1]
        surplus = p - base + self.max_loss * base
        return tail_mean(surplus, weights, 1.0 - self.confidence)

    def serve(
        self, sku: str, costs: FloatArray, probabilities: FloatArray, reference: int, index: int
    ) -> tuple[int, float, bool]:
        """Guard one decision, atomically: block what the budget cannot afford, spend.

        Parameters
        ----------
        sku : str
        costs : ndarray, shape (n,)
            :meth:`costs` of the line's candidates.
        probabilities : ndarray, shape (n,)
            The policy's distribution before the guard.
        reference : int
            The reference candidate (never blocked).
        index : int
            The candidate the policy drew from ``probabilities``.

        Returns
        -------
        tuple
            ``(served index, its exact propensity, whether the draw was blocked)``.
        """
        with self._lock:
            room = min(self._total, self._by_sku.get(sku, 0.0))
            blocked = costs + room < 0.0
            blocked[reference] = False
            served = index if not blocked[index] else reference
            propensity = float(probabilities[served])
            if served == reference:
                propensity += float(probabilities[blocked].sum())
            cost = float(costs[served])
            self._by_sku[sku] = self._by_sku.get(sku, 0.0) + cost
            self._total += cost
            if served != index:
                self.gated += 1
        return served, propensity, served != index

    def spend(self, sku: str, cost: float) -> None:
        """Add a served decision's ``c`` to the SKU's budget and the total."""
        with self._lock:
            self._by_sku[sku] = self._by_sku.get(sku, 0.0) + cost
            self._total += cost

    def budget(self, sku: str | None = None) -> float:
        """The budget left, for ``sku`` or in all (money units of the costs)."""
        with self._lock:
            return self._total if sku is None else self._by_sku.get(sku, 0.0)
