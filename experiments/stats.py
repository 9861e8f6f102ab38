"""Statistics for A/B(/n) experiment results: summaries, relative lifts, sample-ratio
mismatch and do-no-harm checks.

Everything here is a pure function of per-variant *sufficient statistics*
(:class:`VariantStats`): visitor and conversion counts, and the sum and the sum of squares
of each visitor's revenue and profit. A visitor who did not buy contributes 0 to the money
sums. Money is in currency units (floats); the API converts from integer minor units
before calling in. Nothing here does I/O.

Relative lift
-------------
For a metric with per-visitor mean ``m`` (conversion rate, revenue per visitor or profit
per visitor) the relative lift of a treatment over a control is

    L = (m_t − m_c) / |m_c|,

which is the usual ``m_t / m_c − 1`` whenever the control mean is positive. Dividing by
``|m_c|`` keeps "positive means the treatment is better" true when the control loses
money per visitor (negative profit), where ``m_t / m_c − 1`` would flip sign.

Its standard error is the delta-method (first-order) one,

    se² = var_t / (n_t m_c²) + m_t² var_c / (n_c m_c⁴),

with per-visitor sample variances using the ``n − 1`` denominator:
``(Σx² − (Σx)²/n) / (n − 1)`` for money and ``p(1 − p)·n/(n − 1)`` for a conversion
(both are the same formula for 0/1 data). Under a flat prior and a normal approximation
the posterior of L is ``N(L̂, se²)``, which gives

* the central credible interval ``L̂ ± z·se`` with ``z = Φ⁻¹((1 + level)/2)``;
* the chance to win ``P(L > 0) = Φ(L̂/se)``;
* the expected loss of shipping the treatment
  ``E[max(0, −L)] = se·φ(L̂/se) − L̂·Φ(−L̂/se)``, and of keeping the control
  ``E[max(0, L)] = se·φ(L̂/se) + L̂·Φ(L̂/se)`` (the two differ by exactly ``L̂``).

Losses and lifts are fractions of the control mean (0.01 is one percent), not money.

Degenerate data (no visitors, a single visitor, a control mean of zero, counts that
cannot both be true) never raise: the result carries ``None`` in its numeric fields and a
``message`` saying why in plain words. Invalid *arguments* (an unknown metric, a credible
level outside (0, 1), negative counts) raise ``ValueError`` naming the argument.

Examples
--------
>>> control = VariantStats("control", 1000, 100, 0.0, 0.0, 0.0, 0.0)
>>> treatment = VariantStats("engine", 1000, 120, 0.0, 0.0, 0.0, 0.0)
>>> lift = relative_lift(treatment, control, "conversion_rate")
>>> round(lift.estimate, 6), round(lift.se, 4), round(lift.prob_better, 3)
(0.2, 0.1534, 0.904)
>>> sample_ratio_mismatch([10_000, 10_600], [0.5, 0.5]).flagged
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from statistics import NormalDist
from typing import Literal

from scipy import stats as sps

__all__ = [
    "METRICS",
    "HarmCheckResult",
    "Lift",
    "SampleRatioTest",
    "VariantStats",
    "VariantSummary",
    "do_no_harm",
    "relative_lift",
    "sample_ratio_mismatch",
    "summarize",
]

METRICS: tuple[str, ...] = ("conversion_rate", "revenue_per_visitor", "profit_per_visitor")
"""Metrics accepted by :func:`relative_lift` and :func:`do_no_harm`."""

_WORDS = {
    "conversion_rate": "conversion rate",
    "revenue_per_visitor": "revenue per visitor",
    "profit_per_visitor": "profit per visitor",
}

# Σx² − (Σx)²/n loses digits to cancellation; a remainder below this fraction of Σx² is
# round-off, i.e. every visitor had the same value. (A genuine spread that small would be
# a relative standard deviation under 1e-6, far below anything money data shows.)
_ROUNDOFF = 1e-12

# Control means whose relative standard error exceeds this get a warning: the ratio is
# then far from linear over the plausible range and the normal approximation is rough.
_ROUGH_CONTROL_RSE = 0.2

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _cdf(x: float) -> float:
    """Standard normal CDF Φ(x), accurate in both tails (via ``erfc``)."""
    return 0.5 * math.erfc(-x / _SQRT2)


def _pdf(x: float) -> float:
    """Standard normal density φ(x)."""
    return math.exp(-0.5 * x * x) / _SQRT2PI


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class VariantStats:
    """Sufficient statistics of one variant (arm) of an experiment.

    Parameters
    ----------
    name : str
        Variant name (used in messages).
    visitors : int
        Number of units (visitors) assigned and exposed, ``>= 0``.
    conversions : int
        Visitors who bought at least once, ``>= 0``.
    revenue_sum, revenue_sq_sum : float
        Σ and Σ of squares of per-visitor revenue, in currency units and currency
        units², 0 for visitors who did not buy.
    profit_sum, profit_sq_sum : float
        Σ and Σ of squares of per-visitor profit (may be negative), currency units and
        currency units².

    Raises
    ------
    ValueError
        If a count is negative or not an integer, a sum is not a finite number, or a sum
        of squares is negative. Counts that contradict each other (more conversions than
        visitors) are accepted here and reported by the functions that use them.
    """

    name: str
    visitors: int
    conversions: int
    revenue_sum: float
    revenue_sq_sum: float
    profit_sum: float
    profit_sq_sum: float

    def __post_init__(self) -> None:
        for field in ("visitors", "conversions"):
            value = getattr(self, field)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"{field}: variant {self.name!r} needs a non-negative integer count, got {value!r}"
                )
        for field in ("revenue_sum", "revenue_sq_sum", "profit_sum", "profit_sq_sum"):
            value = getattr(self, field)
            if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(
                    f"{field}: variant {self.name!r} needs a finite number, got {value!r}"
                )
            if field.endswith("_sq_sum") and value < 0:
                raise ValueError(
                    f"{field}: variant {self.name!r} has a negative sum of squares ({value!r})"
                )


# --------------------------------------------------------------------------- summary
@dataclass(frozen=True, slots=True)
class VariantSummary:
    """Totals and per-visitor means of one variant.

    Attributes
    ----------
    name : str
        Variant name.
    visitors, conversions : int
        Counts as supplied.
    revenue, profit : float
        Totals in currency units.
    conversion_rate : float or None
        Conversions per visitor (a fraction in [0, 1]); ``None`` without visitors.
    revenue_per_visitor, profit_per_visitor : float or None
        Currency units per visitor; ``None`` without visitors.
    """

    name: str
    visitors: int
    conversions: int
    revenue: float
    profit: float
    conversion_rate: float | None
    revenue_per_visitor: float | None
    profit_per_visitor: float | None


def summarize(variant: VariantStats) -> VariantSummary:
    """Totals and per-visitor means of a variant, with ``None`` instead of 0/0.

    Parameters
    ----------
    variant : VariantStats
        Sufficient statistics (money in currency units).

    Returns
    -------
    VariantSummary
        Counts, revenue and profit totals (currency units) and the per-visitor means;
        the means are ``None`` when the variant has no visitors, never NaN.
    """
    n = int(variant.visitors)
    has = n > 0
    return VariantSummary(
        name=variant.name,
        visitors=n,
        conversions=int(variant.conversions),
        revenue=float(variant.revenue_sum),
        profit=float(variant.profit_sum),
        conversion_rate=variant.conversions / n if has else None,
        revenue_per_visitor=variant.revenue_sum / n if has else None,
        profit_per_visitor=variant.profit_sum / n if has else None,
    )


# --------------------------------------------------------------------------- lift
@dataclass(frozen=True, slots=True)
class Lift:
    """Relative lift of a treatment over a control on one metric.

    All numeric fields are fractions of the control mean (0.05 is +5 %), except
    ``prob_better`` (a probability). They are all ``None`` when the lift cannot be
    estimated; ``message`` then says why.

    Attributes
    ----------
    metric : str
        One of :data:`METRICS`.
    estimate : float or None
        ``(m_t − m_c) / |m_c|``.
    se : float or None
        Delta-method standard error of ``estimate``.
    lower, upper : float or None
        Central credible interval under the normal approximation.
    prob_better : float or None
        ``P(L > 0)``: the chance the treatment beats the control.
    expected_loss : float or None
        ``E[max(0, −L)]``: the lift given up, on average, by shipping the treatment.
    expected_loss_control : float or None
        ``E[max(0, L)]``: the lift given up, on average, by keeping the control.
    message : str
        Plain-words reading of the result, or why there is none.
    """

    metric: str
    estimate: float | None
    se: float | None
    lower: float | None
    upper: float | None
    prob_better: float | None
    expected_loss: float | None
    expected_loss_control: float | None
    message: str


def _undefined(metric: str, message: str) -> Lift:
    return Lift(metric, None, None, None, None, None, None, None, message)


def _who(role: str, variant: VariantStats) -> str:
    return role if variant.name == role else f"{role} {variant.name!r}"


def _check_metric(metric: str) -> None:
    if metric not in _WORDS:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")


def _sums(variant: VariantStats, metric: str) -> tuple[float, float]:
    if metric == "revenue_per_visitor":
        return float(variant.revenue_sum), float(variant.revenue_sq_sum)
    return float(variant.profit_sum), float(variant.profit_sq_sum)


def _inconsistency(variant: VariantStats, metric: str) -> str | None:
    """Why these statistics cannot come from real per-visitor data (None if they can)."""
    n = variant.visitors
    if metric == "conversion_rate":
        if variant.conversions > n:
            return f"reports {variant.conversions} conversions but only {n} visitors"
        return None
    total, squares = _sums(variant, metric)
    if n == 0:
        if total != 0 or squares != 0:
            return f"has no visitors but non-zero {_WORDS[metric].split()[0]} sums"
        return None
    # Cauchy–Schwarz: n·Σx² >= (Σx)² for any real data.
    if n * squares < total * total * (1.0 - 1e-9) - 1e-300:
        return (
            f"has a {_WORDS[metric].split()[0]} sum of squares too small for its sum "
            f"(n·Σx² < (Σx)²), which no real data can produce"
        )
    return None


def _mean_var(variant: VariantStats, metric: str) -> tuple[float, float]:
    """Per-visitor mean and sample variance (n − 1 denominator); needs ``visitors >= 2``."""
    n = variant.visitors
    if metric == "conversion_rate":
        p = variant.conversions / n
        return p, p * (1.0 - p) * n / (n - 1)
    total, squares = _sums(variant, metric)
    mean = total / n
    centred = squares - total * mean
    if centred <= _ROUNDOFF * squares:
        centred = 0.0
    return mean, centred / (n - 1)


def relative_lift(
    treatment: VariantStats,
    control: VariantStats,
    metric: str,
    *,
    credible_level: float = 0.95,
) -> Lift:
    """Relative lift of ``treatment`` over ``control`` with its uncertainty.

    Parameters
    ----------
    treatment, control : VariantStats
        Sufficient statistics of the two arms (money in currency units).
    metric : str
        ``"conversion_rate"``, ``"revenue_per_visitor"`` or ``"profit_per_visitor"``.
    credible_level : float, default 0.95
        Posterior mass of the central interval ``[lower, upper]``, in (0, 1).

    Returns
    -------
    Lift
        Estimate, delta-method standard error, credible interval, chance to win and
        expected losses (all fractions of the control mean). Degenerate data give
        ``None`` fields and a message instead of an exception: an arm without visitors or
        with a single visitor, a control mean of exactly 0, inconsistent statistics, or a
        treatment whose every visitor scored 0 while the control varies. When *both*
        arms have zero variance the lift is known exactly under the model: ``se`` is 0,
        the interval is a point, ``prob_better`` is 1, 0 or 0.5 and the message says so.

    Raises
    ------
    ValueError
        If ``metric`` is unknown or ``credible_level`` is not in (0, 1).

    Notes
    -----
    The normal approximation is poor while the control mean is imprecise (few
    conversions); the message warns when the control mean's relative standard error
    exceeds 20 %.
    """
    _check_metric(metric)
    if not (isinstance(credible_level, Real) and 0.0 < credible_level < 1.0):
        raise ValueError(f"credible_level: expected a number in (0, 1), got {credible_level!r}")
    words = _WORDS[metric]
    arms = (("treatment", treatment), ("control", control))

    for role, arm in arms:
        problem = _inconsistency(arm, metric)
        if problem is not None:
            return _undefined(metric, f"{_who(role, arm)} {problem}: check the data")
    empty = [_who(role, arm) for role, arm in arms if arm.visitors == 0]
    if empty:
        verb = "has" if len(empty) == 1 else "have"
        return _undefined(
            metric, f"{' and '.join(empty)} {verb} no visitors yet: there is nothing to compare"
        )
    single = [_who(role, arm) for role, arm in arms if arm.visitors == 1]
    if single:
        verb = "has" if len(single) == 1 else "have"
        return _undefined(
            metric,
            f"{' and '.join(single)} {verb} a single visitor: the spread of {words} cannot "
            "be estimated from one visitor (at least 2 per arm are needed)",
        )

    n_t, n_c = treatment.visitors, control.visitors
    m_t, var_t = _mean_var(treatment, metric)
    m_c, var_c = _mean_var(control, metric)
    who_c = _who("control", control)
    who_t = _who("treatment", treatment)
    if m_c == 0.0:
        if metric == "conversion_rate":
            why = f"{who_c} has no conversions yet"
        else:
            why = f"{who_c} {words} is exactly 0 so far"
        return _undefined(metric, f"{why}: relative lift is undefined")

    scale = abs(m_c)
    estimate = (m_t - m_c) / scale
    rse_t = math.sqrt(var_t / n_t) / scale  # se(m_t) / |m_c|
    rse_c = math.sqrt(var_c / n_c) / scale  # se(m_c) / |m_c|
    se = math.hypot(rse_t, (m_t / m_c) * rse_c)
    if not (math.isfinite(estimate) and math.isfinite(se)):
        return _undefined(
            metric,
            f"{who_c} {words} ({m_c:.3g}) is too close to 0 for a relative lift to be computed",
        )

    notes: list[str] = []
    if m_c < 0:
        notes.append(
            f"{who_c} {words} is negative ({m_c:.4g}), so the lift is relative to its "
            "magnitude: positive still means the treatment is better"
        )

    if se == 0.0:
        if var_t == 0.0 and var_c == 0.0:
            prob = 1.0 if estimate > 0 else 0.0 if estimate < 0 else 0.5
            message = (
                f"{who_t} {words} is {estimate:+.2%} relative to {who_c}; both arms have zero "
                f"variance (every visitor has the same {words.split()[0]} value), so the "
                "standard error is 0 and the interval is a single point: "
                f"P(better) = {prob:g} by convention reflects the data so far, not certainty"
            )
            return Lift(
                metric=metric,
                estimate=estimate,
                se=0.0,
                lower=estimate,
                upper=estimate,
                prob_better=prob,
                expected_loss=max(0.0, -estimate),
                expected_loss_control=max(0.0, estimate),
                message="; ".join([message, *notes]),
            )
        if m_t == 0.0 and var_t == 0.0:
            what = "no conversions" if metric == "conversion_rate" else f"{words} of exactly 0"
            return _undefined(
                metric,
                f"{who_t} has {what} yet: the lift would be -100% but its uncertainty cannot "
                "be estimated from an arm without any spread; collect more data",
            )
        return _undefined(metric, "the standard error underflows to 0: lift is not computable")

    z = NormalDist().inv_cdf(0.5 + 0.5 * float(credible_level))
    d = estimate / se
    density = _pdf(d)
    prob_better = _cdf(d)
    expected_loss = max(0.0, se * density - estimate * _cdf(-d))
    expected_loss_control = max(0.0, se * density + estimate * prob_better)
    lower, upper = estimate - z * se, estimate + z * se

    if rse_c > _ROUGH_CONTROL_RSE:
        notes.append(
            f"the {who_c} mean is still imprecise (relative standard error {rse_c:.0%}), so "
            "the normal approximation to the lift is rough"
        )
    message = (
        f"{who_t} {words} is {estimate:+.2%} relative to {who_c} "
        f"({credible_level:.0%} credible interval {lower:+.2%} to {upper:+.2%}); "
        f"P(better) = {prob_better:.3f}"
    )
    return Lift(
        metric=metric,
        estimate=estimate,
        se=se,
        lower=lower,
        upper=upper,
        prob_better=prob_better,
        expected_loss=expected_loss,
        expected_loss_control=expected_loss_control,
        message="; ".join([message, *notes]),
    )


# --------------------------------------------------------------------------- SRM
@dataclass(frozen=True, slots=True)
class SampleRatioTest:
    """Chi-square goodness-of-fit test of the visitor split against the allocation.

    Attributes
    ----------
    statistic : float or None
        Pearson's Σ (o − e)² / e over variants with a positive share; ``None`` when it is
        not defined (no visitors, or visitors in a variant whose share is 0).
    dof : int
        Degrees of freedom: variants with a positive share minus 1.
    p_value : float or None
        Upper tail of the chi-square distribution at ``statistic``; 0 when a variant
        with share 0 received visitors (impossible under the allocation); ``None``
        without visitors.
    flagged : bool
        ``p_value < threshold``: the split does not match the allocation.
    expected : tuple of float
        Expected visitors per variant (same order as the input).
    message : str
        Plain-words reading.
    """

    statistic: float | None
    dof: int
    p_value: float | None
    flagged: bool
    expected: tuple[float, ...]
    message: str


def sample_ratio_mismatch(
    observed_visitors: Sequence[int],
    expected_shares: Sequence[float],
    threshold: float = 0.001,
) -> SampleRatioTest:
    """Test whether visitors split across variants as the allocation says (SRM check).

    Parameters
    ----------
    observed_visitors : sequence of int
        Visitors per variant (counts, ``>= 0``).
    expected_shares : sequence of float
        Allocated share of traffic per variant (fractions in [0, 1] summing to 1 within
        1e-9), same order and length as ``observed_visitors``.
    threshold : float, default 0.001
        Flag when the p-value is below this; in (0, 1). The default is strict because the
        check runs repeatedly while an experiment is live.

    Returns
    -------
    SampleRatioTest
        Pearson chi-square statistic (``scipy.stats.chisquare``), degrees of freedom,
        p-value, whether it is flagged, the expected counts and a message. Variants with
        share 0 and no visitors are left out of the test; a variant with share 0 *and*
        visitors is flagged outright (p-value 0). With no visitors at all nothing is
        tested (p-value ``None``, not flagged).

    Raises
    ------
    ValueError
        Naming the argument: empty or different lengths, a count that is negative or not
        an integer, a share that is negative or not finite, shares not summing to 1, or a
        threshold outside (0, 1).
    """
    observed = list(observed_visitors)
    shares = list(expected_shares)
    if not observed:
        raise ValueError("observed_visitors: at least one variant is needed")
    if len(observed) != len(shares):
        raise ValueError(
            f"expected_shares: {len(shares)} shares for {len(observed)} observed_visitors counts"
        )
    for i, count in enumerate(observed):
        if not isinstance(count, Integral) or isinstance(count, bool) or count < 0:
            raise ValueError(
                f"observed_visitors[{i}]: expected a non-negative integer, got {count!r}"
            )
    for i, share in enumerate(shares):
        if not isinstance(share, Real) or not math.isfinite(share) or share < 0:
            raise ValueError(f"expected_shares[{i}]: expected a finite share >= 0, got {share!r}")
    total_share = math.fsum(float(s) for s in shares)
    if abs(total_share - 1.0) > 1e-9:
        raise ValueError(f"expected_shares: shares must sum to 1, they sum to {total_share!r}")
    if not (isinstance(threshold, Real) and 0.0 < threshold < 1.0):
        raise ValueError(f"threshold: expected a number in (0, 1), got {threshold!r}")

    total = int(sum(int(c) for c in observed))
    expected = tuple(total * float(s) / total_share for s in shares)
    live = [i for i, s in enumerate(shares) if s > 0]
    dof = max(len(live) - 1, 0)
    if total == 0:
        return SampleRatioTest(None, dof, None, False, expected, "no visitors yet: nothing to test")
    stray = [i for i, s in enumerate(shares) if s == 0 and observed[i] > 0]
    if stray:
        where = ", ".join(f"variant {i} ({observed[i]} visitors)" for i in stray)
        return SampleRatioTest(
            None,
            dof,
            0.0,
            True,
            expected,
            f"sample ratio mismatch: {where} received traffic despite an allocation of 0; "
            "check assignment and exposure logging before trusting any lift",
        )
    if dof == 0:
        return SampleRatioTest(
            0.0,
            0,
            1.0,
            False,
            expected,
            "only one variant has a positive allocation, so every visitor is expected there: "
            "nothing to compare",
        )

    f_obs = [float(observed[i]) for i in live]
    f_exp = [expected[i] for i in live]
    result = sps.chisquare(f_obs, f_exp)
    statistic = float(result.statistic)
    p_value = float(result.pvalue)
    flagged = p_value < threshold
    split = "/".join(str(int(c)) for c in observed)
    wanted = "/".join(f"{e:.0f}" for e in expected)
    detail = f"chi-square {statistic:.3g} on {dof} dof, p = {p_value:.3g}"
    if flagged:
        message = (
            f"sample ratio mismatch: observed {split} visitors vs {wanted} expected ({detail} "
            f"< {threshold:g}); check assignment, exposure logging and bot filtering before "
            "trusting any lift"
        )
    else:
        message = (
            f"visitor split {split} is consistent with the allocation (expected {wanted}; "
            f"{detail} >= {threshold:g})"
        )
    return SampleRatioTest(statistic, dof, p_value, flagged, expected, message)


# --------------------------------------------------------------------------- do no harm
@dataclass(frozen=True, slots=True)
class HarmCheckResult:
    """Outcome of a do-no-harm check.

    Attributes
    ----------
    status : {"ok", "harm", "inconclusive"}
        ``"harm"`` when P(L < −max_relative_drop) > prob, ``"ok"`` when
        P(L > −max_relative_drop) > prob, otherwise (or on degenerate data)
        ``"inconclusive"``.
    probability : float or None
        P(L < −max_relative_drop): the posterior probability that the metric fell by more
        than the tolerated fraction. ``None`` when the lift cannot be estimated.
    message : str
        Plain-words reading.
    """

    status: Literal["ok", "harm", "inconclusive"]
    probability: float | None
    message: str


def do_no_harm(
    treatment: VariantStats,
    control: VariantStats,
    metric: str,
    max_relative_drop: float,
    prob: float = 0.95,
) -> HarmCheckResult:
    """Check that the treatment does not lower ``metric`` by more than a tolerated fraction.

    Parameters
    ----------
    treatment, control : VariantStats
        Sufficient statistics of the two arms (money in currency units).
    metric : str
        ``"conversion_rate"``, ``"revenue_per_visitor"`` or ``"profit_per_visitor"``.
    max_relative_drop : float
        Tolerated relative drop, a fraction of the control mean (0.02 = 2 %), ``>= 0``.
    prob : float, default 0.95
        Posterior probability needed to call "harm" or "ok", in [0.5, 1).

    Returns
    -------
    HarmCheckResult
        Status, P(L < −max_relative_drop) under the normal posterior of the lift L from
        :func:`relative_lift`, and a message. Degenerate data give ``"inconclusive"``
        with ``probability=None`` and the reason. When both arms have zero variance the
        posterior is a point and the probabilities are 0 or 1.

    Raises
    ------
    ValueError
        If ``metric`` is unknown, ``max_relative_drop`` is negative or not finite, or
        ``prob`` is outside [0.5, 1).
    """
    _check_metric(metric)
    if not (
        isinstance(max_relative_drop, Real)
        and math.isfinite(max_relative_drop)
        and max_relative_drop >= 0
    ):
        raise ValueError(
            f"max_relative_drop: expected a finite fraction >= 0, got {max_relative_drop!r}"
        )
    if not (isinstance(prob, Real) and 0.5 <= prob < 1.0):
        raise ValueError(f"prob: expected a probability in [0.5, 1), got {prob!r}")
    lift = relative_lift(treatment, control, metric)
    if lift.estimate is None or lift.se is None:
        return HarmCheckResult("inconclusive", None, f"inconclusive: {lift.message}")

    margin = lift.estimate + float(max_relative_drop)  # L + δ: > 0 means within tolerance
    if lift.se == 0.0:
        p_harm = 1.0 if margin < 0 else 0.0
        p_ok = 1.0 if margin > 0 else 0.0
        caveat = (
            "; the lift has zero standard error (both arms constant), so this is a point estimate"
        )
    else:
        p_harm = _cdf(-margin / lift.se)
        p_ok = _cdf(margin / lift.se)
        caveat = ""
    words = _WORDS[metric]
    drop = f"{float(max_relative_drop):.2%}"
    status: Literal["ok", "harm", "inconclusive"]
    if p_harm > prob:
        status = "harm"
        message = (
            f"harm: P({words} falls by more than {drop}) = {p_harm:.3f} > {prob:g} "
            f"(lift {lift.estimate:+.2%})"
        )
    elif p_ok > prob:
        status = "ok"
        message = (
            f"ok: P({words} falls by no more than {drop}) = {p_ok:.3f} > {prob:g} "
            f"(lift {lift.estimate:+.2%})"
        )
    else:
        status = "inconclusive"
        message = (
            f"inconclusive: P({words} falls by more than {drop}) = {p_harm:.3f}, neither it "
            f"nor its complement exceeds {prob:g} (lift {lift.estimate:+.2%} ± {lift.se:.2%}); "
            "collect more data"
        )
    return HarmCheckResult(status, p_harm, message + caveat)
