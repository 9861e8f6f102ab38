"""Change detection: does the newest data agree with what the serving posterior predicted?

Time decay (``PRICING_DEMAND_HALF_LIFE_DAYS``) forgets at a fixed rate whether or not
demand moved: a short half-life follows a shift sooner but fits on fewer effective
outcomes in steady state, a long one keeps the evidence but follows slowly (the drift
benchmark, docs/benchmarks.md). Change detection forgets only when the data say so.

At each refit the outcomes that arrived since the serving posterior was fitted are
out-of-sample for it: a one-step-ahead posterior predictive check. Per (segment, category)
block the observed conversions are compared with the posterior predictive, whose variance
counts the binomial noise *and* the posterior's own uncertainty (a block the model knows
little about may surprise it without a change):

    z_b = (O_b - E_b) / sqrt(V_b),   E_b = E_θ[Σ_c n_c p_c(θ)],
    V_b = E_θ[Σ_c n_c p_c(θ)(1 - p_c(θ))] + Var_θ[Σ_c n_c p_c(θ)],

and ``X² = Σ_b z_b²`` is referred to χ² with one degree of freedom per block. A change is
declared when its p-value is below ``alpha`` (1e-3 by default: with daily refits, about
one false alarm in three years when the model is right). The refit then counts the data
from before the tested window at ``weight_before`` (:func:`change_weight`), so the new
regime is learnt from its own outcomes with the old one as a weak prior, and a later
refit that agrees keeps that change point.

A systematic level swing that the model does not describe (a weekly cycle with no weekday
feature, say) looks like a change on the days it is strongest; declare such a cycle as a
context feature so the model explains it (docs/benchmarks.md, drift section).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from pricing.cells import Cells
from pricing.posterior import DemandPosterior

__all__ = ["ChangeDetection", "ChangeTest", "change_weight", "predictive_check"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ChangeDetection:
    """Settings of change detection in refits (``PRICING_CHANGE_*``).

    Attributes
    ----------
    alpha : float
        False-alarm rate of each refit's test, in (0, 1).
    weight_before : float
        What an outcome from before a detected change counts for, in (0, 1].
    """

    alpha: float = 1e-3
    weight_before: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("change detection: alpha must lie in (0, 1)")
        if not 0.0 < self.weight_before <= 1.0:
            raise ValueError("change detection: weight_before must lie in (0, 1]")


@dataclass(frozen=True)
class ChangeTest:
    """Result of :func:`predictive_check`.

    Attributes
    ----------
    blocks : tuple of (str, str)
        The (segment, category) blocks tested, in the order of the arrays below.
    observed, expected, variance : ndarray, shape (B,)
        Conversions seen, their posterior predictive mean and variance (conversions,
        conversions²).
    statistic : float
        ``Σ z_b²``.
    p_value : float
        Upper tail of χ² with B degrees of freedom at ``statistic`` (1.0 when B = 0).
    detected : bool
        ``p_value < alpha``.
    """

    blocks: tuple[tuple[str, str], ...]
    observed: FloatArray
    expected: FloatArray
    variance: FloatArray
    statistic: float
    p_value: float
    detected: bool

    @property
    def z(self) -> FloatArray:
        """Standardised surprise per block, shape (B,)."""
        out: FloatArray = (self.observed - self.expected) / np.sqrt(self.variance)
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable summary (for a snapshot's diagnostics)."""
        z = self.z
        worst = int(np.argmax(np.abs(z))) if len(z) else -1
        return {
            "blocks": len(self.blocks),
            "statistic": round(self.statistic, 3),
            "p_value": self.p_value,
            "detected": self.detected,
            "observed": float(self.observed.sum()),
            "expected": round(float(self.expected.sum()), 3),
            **({"worst_block": list(self.blocks[worst]), "worst_z": round(float(z[worst]), 3)}
               if worst >= 0 else {}),
        }  # fmt: skip


def predictive_check(
    posterior: DemandPosterior,
    cells: Cells,
    *,
    alpha: float = 1e-3,
    min_trials: int = 20,
) -> ChangeTest:
    """Test cells the posterior was not fitted on against its posterior predictive.

    Parameters
    ----------
    posterior : DemandPosterior
        The serving posterior (its importance weights are used).
    cells : Cells
        Outcomes since the posterior's data watermark (raw counts: ``trials`` and
        ``conversions``; any decay weights are ignored). Cells of a segment or SKU new to
        the model are skipped (nothing was predicted for them), as are cells whose
        context columns the posterior does not know.
    alpha : float
        False-alarm rate per test, in (0, 1).
    min_trials : int
        Blocks with fewer trials than this are left out (too little to judge).

    Returns
    -------
    ChangeTest
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    w = posterior.weights
    same_context = tuple(cells.context_columns) == tuple(posterior.context_columns)
    context = cells.context if cells.context is not None else np.zeros((len(cells), 0))
    sums: dict[tuple[str, str], list[FloatArray | float]] = {}
    for i in range(len(cells)):
        segment, sku = str(cells.segment[i]), str(cells.sku[i])
        category = str(cells.category[i])
        if posterior.fitted_indices(segment, sku) is None:
            continue
        if context.shape[1] and not same_context:
            continue
        offset = None
        if same_context and context.shape[1]:
            offset = posterior.d @ context[i]
        promotion = str(cells.promotion[i]) or None
        p = posterior.conversion_probability(
            segment, sku, float(np.exp(cells.log_price_ratio[i])), category=category,
            promotion=promotion, offset=offset,
        )[:, 0]  # fmt: skip
        n = float(cells.trials[i])
        acc = sums.setdefault((segment, category), [np.zeros_like(p), np.zeros_like(p), 0.0, 0.0])
        acc[0] = acc[0] + n * p  # draws of the expected conversions
        acc[1] = acc[1] + n * p * (1.0 - p)  # draws of the binomial variance
        acc[2] = float(acc[2]) + float(cells.conversions[i])
        acc[3] = float(acc[3]) + n
    blocks = tuple(sorted(b for b, acc in sums.items() if float(acc[3]) >= min_trials))
    observed = np.array([float(sums[b][2]) for b in blocks])
    expected = np.empty(len(blocks))
    variance = np.empty(len(blocks))
    for k, b in enumerate(blocks):
        mean_draws = np.asarray(sums[b][0])
        binomial = np.asarray(sums[b][1])
        expected[k] = float(w @ mean_draws)
        spread = float(w @ (mean_draws - expected[k]) ** 2)
        variance[k] = max(float(w @ binomial) + spread, 1e-9)
    statistic = float(np.sum((observed - expected) ** 2 / variance)) if len(blocks) else 0.0
    p_value = float(stats.chi2.sf(statistic, len(blocks))) if len(blocks) else 1.0
    return ChangeTest(blocks, observed, expected, variance, statistic, p_value,
                      bool(len(blocks) and p_value < alpha))  # fmt: skip


def change_weight(age_days: float, change_age_days: float | None, weight_before: float) -> float:
    """Weight of a day's outcomes given the newest detected change.

    Parameters
    ----------
    age_days : float
        The day's age (days before the refit's watermark).
    change_age_days : float or None
        Age of the first day of the new regime; None when no change was detected.
    weight_before : float
        What an outcome from before the change counts for, in (0, 1].

    Returns
    -------
    float
        ``weight_before`` for days older than the change, else 1.
    """
    if not 0.0 < weight_before <= 1.0:
        raise ValueError("weight_before must lie in (0, 1]")
    if change_age_days is None or age_days <= change_age_days:
        return 1.0
    return weight_before
