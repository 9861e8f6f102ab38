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

and the same for the slope: the score ``Σ_c (x_c - x̄_b)(y_c - n_c p_c)`` with x the log
price ratio, which moves when an elasticity does even if conversions at the prices served
hardly change. ``X²``, the sum of both squared over the blocks, is referred to χ² with one
degree of freedom per statistic; beside it, level and slope pooled over all blocks (a
market-wide shift moves every block a little) are referred to χ² with two, and the
p-value is twice the smaller of the two (Bonferroni). A change is declared when the
p-value is below ``alpha`` (1e-3 by default: with daily refits, about one false alarm in
three years when the model is right).

Level and slope pooled over each category's blocks then say *where* the change shows
(:meth:`ChangeTest.moved_categories`, a screen per category, Holm at 5 %, not a third test: as
one, Bonferroni over three, it found a one-category shift in more windows but delayed a
market-wide one by three days in the drift benchmark). The refit marks those categories'
outcomes from the tested window on as a new regime (every category's when none or all
show it, or the rest still do pooled; :class:`ChangePoints`), whose shift of intercept and log elasticity (common to
the moved categories, plus a zero-sum deviation per category) the demand model fits
(:attr:`pricing.cells.CellRecord.regime`, folded into the draws so decisions are for the
new regime), and counts their older outcomes at ``weight_before`` (:func:`change_weight`):
they still say who differs from whom, the new outcomes set the level. A category that did
not move keeps all of its evidence, so it is not explored again for nothing. A later
refit that agrees keeps the change points.

One refit's window may be too small to pass the test while the same surprise repeats
refit after refit (a moderate shift: each day's pooled z near 2.5, where the single test
needs about 3.9). With ``cusum`` on, the pooled surprises of consecutive refits also feed
a two-sided CUSUM (Page 1954) per statistic, carried from snapshot to snapshot
(:class:`Cusum`); a chart above ``h`` declares a change at the start of its excursion (the
first window after it last stood at 0).

The budget is spent **per day of data**, not per refit, so that a service refitting every
six hours (or early, when online updates spend a block's ESS) raises no more false alarms
than one refitting daily. A window of ``f`` days (its span in clock time) runs the single
test at ``alpha / 2 · min(f, 1)``, and adds ``√f · z - k · f`` to the upper chart
(``-√f · z - k · f`` to the lower): under no change ``√f · z`` has variance ``f``, so the
charts follow the same random walk in days whatever the cadence, and a shift that moves a
whole day's surprise by ``δ`` climbs ``δ - k`` a day. ``h`` is set so that the four charts
(level and slope, both signs) together run ``2 / alpha`` days between false alarms on
average (Siegmund's approximation with its overshoot correction scaled to the window,
:func:`cusum_threshold`: shorter windows overshoot less and get a higher ``h``). The allowance ``k`` is 1 by
default: the single test already finds a shift whose day moves ``|z|`` past about 3.9, and
the CUSUM is there for the band below, where a day of delay costs most; with ``k = 1``
(``h`` 3.7) a day's ``|z|`` of 3 is found in about 2.3 days and one of 2 in 4.3, where
``k = 0.5`` (``h`` 7.1) took 3.2 and 5.3 (:func:`cusum_delay`); below ``|z|`` 1.5 a day,
a shift that costs little, ``k = 1`` is the slower (23 days at 1, against 15).

A systematic level swing that the model does not describe (a weekly cycle with no weekday
feature, say) looks like a change on the days it is strongest; declare such a cycle as a
context feature so the model explains it (docs/benchmarks.md, drift section).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

from pricing.cells import Cells
from pricing.posterior import DemandPosterior

__all__ = ["ChangeDetection", "ChangePoints", "ChangeTest", "Cusum", "change_weight",
           "cusum_delay", "cusum_threshold", "predictive_check"]

FloatArray = NDArray[np.float64]
#: A day: a :class:`datetime.date` in the service, a day number in the simulator.
Day = TypeVar("Day")

#: Level of the screen that picks, after a detection, the categories whose own surprise
#: shows the change (:meth:`ChangeTest.moved_categories`).
CATEGORY_ALPHA = 0.05
#: A single test's detection is dated back to the start of a same-direction CUSUM
#: excursion (:meth:`Cusum.excursion_start`) when the detecting window moved the statistic
#: by at least this much (standard deviations of the window's pooled surprise) ...
DATING_MIN_Z = 2.0
#: ... and the chart stood at least this high before the window.
DATING_MIN_CHART = 1.0


@dataclass(frozen=True)
class ChangeDetection:
    """Settings of change detection in refits (``PRICING_CHANGE_*``).

    Attributes
    ----------
    alpha : float
        False-alarm rate of each refit's test, in (0, 1).
    weight_before : float
        What an outcome from before a detected change counts for, in (0, 1].
    cusum : bool
        Also accumulate consecutive refits' pooled surprises (:class:`Cusum`); the single
        test then runs at ``alpha / 2``.
    cusum_k : float
        The CUSUM's allowance per day of data, in standard deviations of a day's pooled
        surprise (> 0): a shift whose day moves the surprise by less than this does not
        accumulate; about half the smallest shift worth finding within days.
    by_category : bool
        After a detection by the single test, start the new regime only in the categories
        whose own surprise shows the change (:meth:`ChangeTest.moved_categories`; all of
        them when none or every one does); False: always in every category.
    cusum_dating : bool
        With ``cusum``: date a single test's detection back to the start of a CUSUM
        excursion already under way in the change's direction (:meth:`Cusum.excursion_start`),
        so that the shift's first day, which moved the charts but fell just short of the
        test, counts as the new regime. False (the default): a detection starts on its
        window's day. Off by default: in the drift benchmark (2026-12-07, seed 7, the one of
        eight seeds where it moved a detection) it earned 93.8 % of the moving oracle
        against 94.9 % without, 90.7 against 93.3 % after the shift.
    """

    alpha: float = 1e-3
    weight_before: float = 0.25
    cusum: bool = False
    cusum_k: float = 1.0
    by_category: bool = True
    cusum_dating: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("change detection: alpha must lie in (0, 1)")
        if not 0.0 < self.weight_before <= 1.0:
            raise ValueError("change detection: weight_before must lie in (0, 1]")
        if not self.cusum_k > 0.0:
            raise ValueError("change detection: cusum_k must be > 0")

    def detection_label(self, before: Cusum | None, z: FloatArray, label: str) -> str:
        """The label of the window a single test's detection in window ``label`` starts its
        regime at: ``label``, or with ``cusum`` and ``cusum_dating`` the start of an excursion
        of the charts ``before`` (as they stood before that window) in the change's
        direction (:meth:`Cusum.excursion_start`)."""
        if before is None or not (self.cusum and self.cusum_dating):
            return label
        return before.excursion_start(z, label)

    @property
    def test_alpha(self) -> float:
        """False-alarm rate of the single test per day of data (half of ``alpha`` with the
        CUSUM)."""
        return self.alpha / 2 if self.cusum else self.alpha

    def window(self, days: float) -> tuple[float, float]:
        """The single test's level and the CUSUM's threshold for a window of ``days`` days.

        The level is ``test_alpha · min(days, 1)``: the windows of one day share its budget
        whatever the refit cadence, and a window longer than a day is one test at the
        daily level. The threshold is :func:`cusum_threshold` at ``alpha / 2`` with
        ``step = min(days, 1)``: a service refitting every six hours raises as many false
        alarms per day as one refitting daily.

        Parameters
        ----------
        days : float
            The window's span, in days (> 0).

        Returns
        -------
        (float, float)
            The level (p-value below it: a change) and ``h`` (standard deviations of a
            day's surprise).
        """
        if not days > 0.0:
            raise ValueError("change detection: a window's days must be > 0")
        step = min(float(days), 1.0)
        return self.test_alpha * step, cusum_threshold(self.alpha / 2, self.cusum_k, step=step)

    @property
    def cusum_h(self) -> float:
        """The CUSUM's decision threshold for daily windows (:meth:`window`)."""
        return self.window(1.0)[1]


def cusum_threshold(alpha: float, k: float = 1.0, charts: int = 4, step: float = 1.0) -> float:
    """Threshold ``h`` of one-sided CUSUMs of a day's N(0, 1) surprise with allowance ``k``
    per day such that ``charts`` of them together raise a false alarm every ``1 / alpha``
    days on average, when each step adds ``step`` days of data (:meth:`Cusum.step`).

    Siegmund's approximation of one chart's in-control run length, in days,
    ``ARL = (exp(2 k b) - 2 k b - 1) / (2 k²)``, with the boundary corrected for the
    overshoot of steps of standard deviation ``√step``: ``b = h + 1.166 √step``; charts
    taken as independent (the combined run length is about ``ARL / charts``). Finer steps
    overshoot less and so need a higher ``h`` for the same false alarms per day (with
    ``k = 1``, quarter-day steps at the daily ``h`` would raise three times as many).

    Parameters
    ----------
    alpha : float
        False alarms per day, in (0, 1).
    k : float
        Allowance per day, in standard deviations of a day's surprise (> 0).
    charts : int
        Number of one-sided charts watched together (two statistics, two sides: 4).
    step : float
        Days of data per step, in (0, 1] (a longer window: 1, which is conservative).

    Returns
    -------
    float
        ``h``, in standard deviations of a day's surprise.
    """
    if not 0.0 < alpha < 1.0 or not k > 0.0 or charts < 1 or not step > 0.0:
        raise ValueError("cusum_threshold: alpha in (0, 1), k > 0, charts >= 1, step > 0")
    target = charts / alpha

    def excess(h: float) -> float:  # at daily steps; the boundary b is the same for any
        x = 2.0 * k * (h + 1.166)
        return (math.expm1(x) - x) / (2.0 * k * k) - target

    b = float(optimize.brentq(excess, 0.0, 200.0)) + 1.166
    return b - 1.166 * math.sqrt(min(step, 1.0))


def cusum_delay(shift: float, k: float, h: float) -> float:
    """Mean days a one-sided CUSUM started at 0 takes to find a shift (Siegmund's
    approximation of the out-of-control run length).

    ``ARL(Δ) = (exp(-2 Δ b) + 2 Δ b - 1) / (2 Δ²)`` with ``Δ = shift - k`` and
    ``b = h + 1.166`` (``b² `` when ``Δ = 0``).

    Parameters
    ----------
    shift : float
        How far the shift moves a day's pooled surprise, in standard deviations (≥ 0).
    k, h : float
        The chart's allowance per day and threshold (:class:`ChangeDetection`).

    Returns
    -------
    float
        Days (of data) to the detection, on average.
    """
    if shift < 0.0 or not k > 0.0 or not h > 0.0:
        raise ValueError("cusum_delay: shift >= 0, k > 0, h > 0")
    drift, b = shift - k, h + 1.166
    if abs(drift) < 1e-9:
        return b * b
    x = 2.0 * drift * b
    return (math.exp(-x) + x - 1.0) / (2.0 * drift * drift)


@dataclass(frozen=True)
class Cusum:
    """Two-sided CUSUMs of consecutive refits' pooled surprises, carried between refits.

    Attributes
    ----------
    upper, lower : tuple of float
        ``S⁺`` and ``S⁻`` per statistic (level, slope), in standard deviations.
    starts : tuple of (str or None)
        Per chart (upper level, upper slope, lower level, lower slope): the label of the
        window in which its current excursion began (None while it stands at 0).
    """

    upper: tuple[float, float] = (0.0, 0.0)
    lower: tuple[float, float] = (0.0, 0.0)
    starts: tuple[str | None, ...] = (None, None, None, None)

    def step(self, z: FloatArray, label: str, k: float, h: float,
             days: float = 1.0) -> tuple[Cusum, str | None]:  # fmt: skip
        """Add one refit's pooled surprises: ``√days · z - k · days`` to the upper charts,
        ``-√days · z - k · days`` to the lower ones.

        Parameters
        ----------
        z : ndarray, shape (1,) or (2,)
            The window's pooled level (and slope) surprise (:attr:`ChangeTest.pooled_z`);
            a statistic the window could not test leaves its charts as they were.
        label : str
            Names the window; labels must sort in time order (the service: the ISO date
            of the UTC day the window starts on).
        k, h : float
            Allowance per day and threshold (:class:`ChangeDetection`).
        days : float
            The window's span in days (> 0): a window of a quarter day moves the charts
            as a quarter of a day's random walk.

        Returns
        -------
        (Cusum, str or None)
            The charts after this window, and, when one crossed ``h``, the label of the
            window its excursion began in (the charts then start again from 0).
        """
        if not days > 0.0:
            raise ValueError("Cusum.step: days must be > 0")
        values = [float(v) for v in np.asarray(z, dtype=float)[:2]] + [math.nan] * (2 - min(len(z), 2))
        upper, lower, starts = list(self.upper), list(self.lower), list(self.starts)
        root = math.sqrt(days)
        for j, v in enumerate(values):
            if not math.isfinite(v):
                continue
            for side, charts, move in ((0, upper, root * v - k * days), (2, lower, -root * v - k * days)):
                before = charts[j]
                charts[j] = max(0.0, before + move)
                if charts[j] == 0.0:
                    starts[side + j] = None
                elif before == 0.0:
                    starts[side + j] = label
        fired = [i for i, stat in enumerate(upper + lower) if stat > h]
        if fired:
            begun = [start for i in fired if (start := starts[i]) is not None]
            first = min(begun, default=label)  # labels sort by time (ISO dates)
            return Cusum(), first
        return Cusum((upper[0], upper[1]), (lower[0], lower[1]), tuple(starts)), None

    def excursion_start(self, z: FloatArray, label: str, min_z: float = DATING_MIN_Z,
                        min_chart: float = DATING_MIN_CHART) -> str:  # fmt: skip
        """When a change that the single test found in window ``label`` began: the start
        of a chart's excursion already under way in the change's direction, else ``label``.

        Called on the charts as they stood *before* the window's step. The single test
        sees one window; a shift often shows the day it happens, just short of the test
        (a pooled surprise of -3.5 where the test needs about -3.9), and is found the day
        after. Dating the change to that later window would count the shift's first day
        as the old regime. Page's estimate of the change point is the last time the
        chart stood at 0; it is used here only when the chart agrees with the window
        (the statistic moved by at least ``min_z`` in this window, in the chart's
        direction) and has itself moved (by at least ``min_chart`` beyond its allowance),
        so that a chart idling just above 0 for weeks never dates a change far back.

        Parameters
        ----------
        z : ndarray, shape (1,) or (2,)
            The detecting window's pooled level (and slope) surprise.
        label : str
            The detecting window's label (labels sort in time order).
        min_z : float
            How far (standard deviations) a statistic must have moved in this window for
            its chart to date the change.
        min_chart : float
            How high the chart must stand before the window (standard deviations).

        Returns
        -------
        str
            The earliest qualifying excursion's start label, or ``label``.
        """
        values = [float(v) for v in np.asarray(z, dtype=float)[:2]]
        begun = [label]
        for j, v in enumerate(values):
            if not math.isfinite(v) or abs(v) < min_z:
                continue
            side = 0 if v > 0 else 2
            chart = (self.upper if v > 0 else self.lower)[j]
            start = self.starts[side + j]
            if chart >= min_chart and start is not None:
                begun.append(start)
        return min(begun)  # labels sort by time

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (a snapshot's diagnostics)."""
        return {"upper": [round(v, 4) for v in self.upper], "lower": [round(v, 4) for v in self.lower],
                "starts": list(self.starts)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Cusum:
        """Inverse of :meth:`to_dict` (empty charts for None or a malformed entry)."""
        try:
            upper = tuple(float(v) for v in data["upper"])  # type: ignore[index]
            lower = tuple(float(v) for v in data["lower"])  # type: ignore[index]
            starts = tuple(None if v is None else str(v) for v in data["starts"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return cls()
        if len(upper) != 2 or len(lower) != 2 or len(starts) != 4:
            return cls()
        return cls((upper[0], upper[1]), (lower[0], lower[1]), starts)


@dataclass(frozen=True)
class ChangePoints(Generic[Day]):
    """Where each category's current regime began, carried from refit to refit.

    A detection starts a new regime in every category (a competitor's sale across the
    store) or only in some (a sale in one aisle, :meth:`ChangeTest.moved_categories`);
    a category that did not move keeps its old regime and its old outcomes at full weight.

    Attributes
    ----------
    since : Day or None
        First day of the new regime of every category not in ``by_category`` (None: no
        change found in them).
    by_category : mapping of str to Day
        Categories whose regime began on a day of their own (a later detection in them only).
    """

    since: Day | None = None
    by_category: Mapping[str, Day] = field(default_factory=dict)

    def start(self, category: str) -> Day | None:
        """First day of ``category``'s current regime (None: it has not changed)."""
        return self.by_category.get(category, self.since)

    def __bool__(self) -> bool:
        return self.since is not None or bool(self.by_category)

    def moved(self, day: Day, categories: tuple[str, ...] | None) -> ChangePoints[Day]:
        """The points after a detection on ``day`` in ``categories`` (None: in all)."""
        if categories is None:
            return ChangePoints(day, {})
        return ChangePoints(self.since, {**self.by_category, **dict.fromkeys(categories, day)})


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
    slope_z : ndarray, shape (B,)
        Standardised surprise in how conversions move with price within each block: the
        score ``Σ_c (log price_c - mean) (y_c - n_c p_c)`` over its predictive sd (NaN for
        a block served at one price only). An elasticity that moved shows here even when
        the level at the prices served did not.
    statistic : float
        ``Σ z_b² + Σ slope_z_b²``.
    p_value : float
        Twice the smaller of two p-values (Bonferroni): ``statistic`` against χ² with one
        degree of freedom per level and per slope tested, and the pooled test against χ²
        with one per entry of ``pooled_z`` (1.0 when nothing was tested).
    detected : bool
        ``p_value < alpha``.
    pooled_z : ndarray, shape (1,) or (2,)
        The level's and (when any block has two prices) the slope's surprise summed over
        all blocks: a market-wide shift (a competitor's sale) moves every block a little,
        which the pooled test sees long before any one block's.
    categories : tuple of str
        The categories of the per-category test (empty with one category).
    category_z : ndarray, shape (C, 2)
        Level and slope surprise summed over each category's blocks (slope NaN where the
        category was served at one price only): where a change shows (a sale in one
        aisle moves all of that category's blocks a little). Not tested: after a
        detection they pick the categories that moved (:meth:`moved_categories`).
    alpha : float
        The level the p-value was judged at (:meth:`ChangeDetection.window`).
    """

    blocks: tuple[tuple[str, str], ...]
    observed: FloatArray
    expected: FloatArray
    variance: FloatArray
    slope_z: FloatArray
    statistic: float
    p_value: float
    detected: bool
    pooled_z: FloatArray = field(default_factory=lambda: np.zeros(0))
    categories: tuple[str, ...] = ()
    category_z: FloatArray = field(default_factory=lambda: np.zeros((0, 2)))
    alpha: float = 1e-3

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
            "alpha": self.alpha,
            "detected": self.detected,
            "observed": float(self.observed.sum()),
            "expected": round(float(self.expected.sum()), 3),
            **({"worst_block": list(self.blocks[worst]), "worst_z": round(float(z[worst]), 3)}
               if worst >= 0 else {}),
            **({"worst_slope_z": round(float(self.slope_z[np.nanargmax(np.abs(self.slope_z))]), 3)}
               if np.isfinite(self.slope_z).any() else {}),
            "pooled_z": [round(float(v), 3) for v in self.pooled_z],
            **({"worst_category": self.categories[worst_c],
                "worst_category_z": [None if math.isnan(v) else round(float(v), 3) for v in self.category_z[worst_c]]}
               if (worst_c := self._worst_category()) is not None else {}),
        }  # fmt: skip

    def moved_categories(self, alpha: float = CATEGORY_ALPHA) -> tuple[str, ...] | None:
        """The categories whose own surprise shows the change, or None for all of them.

        Each tested category's pooled level and slope surprise (:attr:`category_z`) is
        referred to χ² with one degree of freedom per statistic it could test, and the
        categories that pass Holm's step-down procedure at ``alpha`` moved (at most
        ``alpha`` chance of marking any category that did not, however many there are).
        If the categories that did not pass, pooled (Stouffer's sum of their surprises
        over the square root of their number), still surprise at ``alpha``, the change
        is everywhere, only weaker in some: every category. When no category passes, the
        change may sit in a few (segment, category) blocks (one segment's customers
        courted by a competitor): then the categories of the blocks whose own level and
        slope surprise pass at ``alpha`` over the number of blocks (Bonferroni). This
        screens *where* a change that the test has already declared shows; it does not
        test again. None (every category) when the window held one category only, or when
        nothing, or every category, passes: a change seen only pooled over the market is
        market-wide as far as the data tell.

        Parameters
        ----------
        alpha : float
            Level of each category's screen, in (0, 1).

        Returns
        -------
        tuple of str or None
        """
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must lie in (0, 1)")
        if not self.categories:
            return None

        def p_value(z: FloatArray) -> float:
            finite = z[np.isfinite(z)]
            return float(stats.chi2.sf(float(finite @ finite), len(finite))) if len(finite) else 1.0

        ranked = sorted(zip((p_value(z) for z in self.category_z), range(len(self.categories)), strict=True))
        moved: set[str] = set()
        for rank, (p, i) in enumerate(ranked):  # Holm: step down while the next one passes
            if p >= alpha / (len(ranked) - rank):
                break
            moved.add(self.categories[i])
        rest = np.array([z for c, z in zip(self.categories, self.category_z, strict=True) if c not in moved])
        if moved and len(rest):
            counts = np.isfinite(rest).sum(axis=0)
            stouffer = np.where(counts > 0, np.nansum(rest, axis=0) / np.sqrt(np.maximum(counts, 1)), np.nan)
            if p_value(stouffer) < alpha:
                return None
        if not moved and len(self.blocks):
            per_block = np.column_stack([self.z, self.slope_z])
            moved = {b[1] for b, z in zip(self.blocks, per_block, strict=True)
                     if p_value(z) < alpha / len(self.blocks)}  # fmt: skip
        if not moved or moved >= set(self.categories):
            return None
        return tuple(sorted(moved))

    def _worst_category(self) -> int | None:
        """Index of the category with the largest surprise (None without the test)."""
        if not self.categories:
            return None
        size = np.nansum(self.category_z**2, axis=1)
        return int(np.argmax(size))


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
    found: dict[tuple[str, str], list[tuple[float, float, float, FloatArray]]] = {}
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
        log_ratio = float(cells.log_price_ratio[i])
        p = posterior.conversion_probability(segment, sku, float(np.exp(log_ratio)), category=category,
                                             promotion=promotion, offset=offset)[:, 0]  # fmt: skip
        found.setdefault((segment, category), []).append(
            (float(cells.trials[i]), float(cells.conversions[i]), log_ratio, p))
    blocks = tuple(sorted(b for b, rows in found.items() if sum(r[0] for r in rows) >= min_trials))
    observed, expected, variance = np.empty(len(blocks)), np.empty(len(blocks)), np.empty(len(blocks))
    slope_z = np.full(len(blocks), np.nan)
    # Pooled over the blocks (a market-wide shift): observed, draws of the expected value,
    # binomial variance; [0] level, [1] slope.
    pooled_o, pooled_bin = [0.0, 0.0], [0.0, 0.0]
    pooled_draws = [np.zeros(len(w)), np.zeros(len(w))]
    # The same per category: category -> [observed, draws, binomial] per statistic (None:
    # that statistic not tested in the category).
    per_category: dict[str, list[list[Any] | None]] = {}
    for k, b in enumerate(blocks):
        rows = found[b]
        n = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        x = np.array([r[2] for r in rows])
        prob = np.stack([r[3] for r in rows])  # (C, D)
        centred = x - float(n @ x) / float(n.sum())
        for j, g in enumerate((np.ones_like(n), centred)):
            if j == 1 and np.abs(centred).max() <= 1e-6:
                continue  # one price only: no slope to test
            o, draws, binomial = _score(n, y, prob, w, g)
            e, v = _moments(draws, binomial, w)
            if j == 0:
                observed[k], expected[k], variance[k] = o, e, v
            else:
                slope_z[k] = (o - e) / np.sqrt(v)
            pooled_o[j] += o
            pooled_draws[j] = pooled_draws[j] + draws
            pooled_bin[j] += binomial
            acc = per_category.setdefault(b[1], [None, None])
            if acc[j] is None:
                acc[j] = [0.0, np.zeros(len(w)), 0.0]
            total = acc[j]
            assert total is not None
            total[0] += o
            total[1] = total[1] + draws
            total[2] += binomial
    level = (observed - expected) ** 2 / variance
    slopes = slope_z[np.isfinite(slope_z)]
    statistic = float(level.sum() + (slopes**2).sum())
    dof = len(blocks) + len(slopes)
    pooled_z = np.zeros(0)
    if dof:
        moments = [_moments(pooled_draws[j], pooled_bin[j], w) for j in range(1 + bool(len(slopes)))]
        pooled_z = np.array([(pooled_o[j] - e) / np.sqrt(v) for j, (e, v) in enumerate(moments)])
    p_blocks = float(stats.chi2.sf(statistic, dof)) if dof else 1.0
    p_pooled = float(stats.chi2.sf(float(pooled_z @ pooled_z), len(pooled_z))) if dof else 1.0
    tests = [p_blocks, p_pooled]
    categories = tuple(sorted(per_category)) if len(per_category) > 1 else ()
    category_z = np.full((len(categories), 2), np.nan)
    for i, category in enumerate(categories):
        for j, total in enumerate(per_category[category]):
            if total is not None:
                e, v = _moments(total[1], total[2], w)
                category_z[i, j] = (total[0] - e) / np.sqrt(v)
    p_value = min(1.0, len(tests) * min(tests))  # Bonferroni over the two tests
    return ChangeTest(blocks, observed, expected, variance, slope_z, statistic, p_value,
                      bool(dof and p_value < alpha), pooled_z, categories, category_z, alpha)  # fmt: skip


def _score(n: FloatArray, y: FloatArray, prob: FloatArray, w: FloatArray,
           g: FloatArray) -> tuple[float, FloatArray, float]:  # fmt: skip
    """Observed ``Σ g y``, its expected value under each draw (D,), and the binomial
    variance averaged over the draws; ``n``, ``y``, ``g`` shape (C,), ``prob`` (C, D)."""
    draws: FloatArray = (n * g) @ prob
    binomial = float(w @ ((n * g * g) @ (prob * (1.0 - prob))))
    return float(g @ y), draws, binomial


def _moments(draws: FloatArray, binomial: float, w: FloatArray) -> tuple[float, float]:
    """Posterior predictive mean and variance: the spread over the draws plus the noise."""
    mean = float(w @ draws)
    return mean, max(float(w @ (draws - mean) ** 2) + binomial, 1e-9)


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
