"""Demand that drifts: recovery after a shift, with and without time decay, vs Vowpal Wabbit.

    python -m benchmarks.drift               # 2 seeds x 20,000 visitors; writes docs/benchmarks.md + plot
    python -m benchmarks.drift --quick       # tiny market, one seed, prints only
    python -m benchmarks.drift --shift-categories 0 --section one-category
                                             # the shift hits category 0 only; own section

Setting
-------
A market of :class:`experiments.simulator.Market` (logistic demand) whose demand moves
(:class:`experiments.simulator.Drift`): days of ``--visitors-per-day`` visitors with a
weekly cycle of the intercepts (``--weekly-amplitude`` on the logit scale), and at
``--shift-at`` every elasticity is multiplied by ``--elasticity-factor`` and every
intercept moves by ``--intercept-shift`` (a competitor's sale, say: customers buy less
and compare more); with ``--shift-categories``, only in the categories named (a sale in
one aisle), with ``--shift-segments`` only in the segments named (a competitor courting
one kind of customer). Every policy plays the same visitors with the same purchase draws,
against the market of each visitor's phase. The **moving oracle** serves each visitor
the best action of that visitor's phase.

Policies
--------
engine (no decay)
    :class:`pricing.policy.ThompsonPricePolicy` refitted on every outcome so far, all
    counting fully (``PRICING_DEMAND_HALF_LIFE_DAYS=0``).
engine, weekday declared
    The same, with the day of the week a declared context feature (what the service
    fills in from a quote's time when the schema declares ``weekday``): the weekly cycle
    becomes a day-of-week intercept.
engine, change detection, weekday declared
    The same, and each refit first tests the outcomes since the serving posterior's fit
    against its predictive (:func:`pricing.changes.predictive_check`, what the service
    does with ``PRICING_CHANGE_DETECTION``); after a detection, in the categories where
    it shows (:meth:`pricing.changes.ChangeTest.moved_categories`; every one when none or
    all do), older outcomes count ``--weight-before`` (0.25). ``+every-category`` starts
    the new regime in every category on every detection (``PRICING_CHANGE_BY_CATEGORY=false``).
engine, change detection with a CUSUM, with ``--variant detect+cusum``
    The same, and the pooled surprises of consecutive refits also feed a CUSUM
    (:class:`pricing.changes.Cusum`, ``PRICING_CHANGE_CUSUM``), which finds a moderate
    shift that no single day shows clearly. ``+global-shift`` fits a market-wide shift
    only after a detection (no deviation per category).
engine (half-life h days), with ``--variant half-life=h``
    Each day's outcomes weighted ``0.5 ** (age / h)`` in the refit
    (:func:`pricing.cells.decay_weight`, ``PRICING_DEMAND_HALF_LIFE_DAYS``).
vw-epsilon
    Vowpal Wabbit ``--cb_explore_adf --epsilon 0.05`` learning after every visitor (as in
    benchmarks/promotions_joint.py); it forgets through its online updates.

The engine fits first after 200 visitors and again after 400 (the service's first fit at
200 outcomes, refitted in full when they double), then once a simulated day (the service
refits every ``PRICING_REFIT_EVERY_SECONDS``, 6 h by default, and between refits reweights
its draws online: ``+reweight`` models that; otherwise the posterior is fixed between
refits). Runs before 2026-12-06 20:15 UTC fitted first after 500 visitors, then at 1,000
and 2,000 (``--first-refit 500``).

Reported: profit as a share of the moving oracle's (expected profit of the actions
served), before and after the shift, and the **recovery**: visitors after the shift
until the share over a trailing window of 1,000 visitors is back within 2 points of the
policy's own share over the 1,000 visitors before the shift, and until it is within 2
points of the oracle (98 %), or "-" when that never happens in the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.promotions_joint import (
    check_wiring,
    engine_guardrails,
    engine_offers,
    peer_python,
)
from benchmarks.report import DOC, replace_section
from experiments.simulator import Drift, Market, phased
from pricing.cells import CellRecord, Cells, decay_weight
from pricing.changes import ChangeDetection, ChangePoints, Cusum, change_weight, predictive_check
from pricing.context import ContextSchema
from pricing.demand import DemandModel
from pricing.policy import LineContext, ThompsonPricePolicy
from pricing.posterior import DemandPosterior, OutcomeRow, outcome_log_likelihood

PLOT = DOC.parent / "img" / "drift.png"
BEGIN, END = "<!-- drift:begin -->", "<!-- drift:end -->"
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
WINDOW = 1000

VW_SCRIPT = r"""
import json, sys
import numpy as np
import vowpalwabbit

data = np.load(sys.argv[1])
cfg = json.loads(sys.argv[2])
prob, margin, ratio = data["prob"], data["margin"], data["ratio"]  # (phases,S,J,A), (J,A), (J,A)
seg, sku, u, phase = data["seg"], data["sku"], data["u"], data["phase"]
n_prices = int(cfg["n_prices"])
J, A = margin.shape
vw = vowpalwabbit.Workspace(f"--cb_explore_adf --epsilon 0.05 -q sa --quiet --random_seed {cfg['seed']}")
rng = np.random.default_rng([cfg["seed"], 17])
lines = [[f"|a p{a % n_prices} k{a // n_prices} p{a % n_prices}k{a // n_prices} r:{ratio[j, a]:.4f}"
          for a in range(A)] for j in range(J)]
actions = np.empty(len(seg), dtype=np.int64)
for t in range(len(seg)):
    s, j = int(seg[t]), int(sku[t])
    example = [f"shared |s seg{s} sku{j}", *lines[j]]
    pmf = np.asarray(vw.predict(example), dtype=np.float64)
    cdf = np.cumsum(pmf)
    a = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), A - 1)
    bought = u[t] < prob[phase[t], s, j, a]
    cost = -(float(margin[j, a]) if bought else 0.0) / float(cfg["list"][j])
    example[1 + a] = f"0:{cost:.6f}:{max(pmf[a] / cdf[-1], 1e-6):.6f} " + lines[j][a]
    vw.learn(example)
    actions[t] = a
vw.finish()
print(json.dumps(actions.tolist()))
"""


@dataclass(frozen=True)
class Variant:
    """How one engine run learns: time decay, change detection, a declared weekday."""

    half_life: float = 0.0
    detect: bool = False
    weekday: bool = False
    #: After a detection, a deviation per category from the market-wide shift (the
    #: default); False: the market-wide shift only (``global-shift``).
    category_shift: bool = True
    #: With ``detect``: also a CUSUM of consecutive refits' surprises (``cusum``;
    #: ``PRICING_CHANGE_CUSUM``).
    cusum: bool = False
    #: With ``detect``: a detection starts a new regime in every category, not only where
    #: it shows (``every-category``; ``PRICING_CHANGE_BY_CATEGORY=false``).
    every_category: bool = False
    #: Between refits, fold each batch of outcomes into the serving posterior's
    #: (segment, category) block weights, and refit early when a block's ESS falls below
    #: ``Settings.ess_fraction`` of the draws, as the service's updater does
    #: (``reweight``; ``PRICING_REWEIGHT_BLOCKS``, ``PRICING_REFIT_ESS_FRACTION``).
    reweight: bool = False

    @property
    def name(self) -> str:
        """Label in tables and plots."""
        parts = [f"half-life {self.half_life:g} days"] if self.half_life else []
        parts += ["change detection"] if self.detect else []
        parts += ["market-wide shift only"] if self.detect and not self.category_shift else []
        parts += ["CUSUM"] if self.detect and self.cusum else []
        parts += ["every category"] if self.detect and self.every_category else []
        parts += ["weekday declared"] if self.weekday else []
        parts += ["online updates"] if self.reweight else []
        return "engine, " + (", ".join(parts) if parts else "no decay")


@dataclass(frozen=True)
class Settings:
    """One run's market, drift, schedule and sampler."""

    segments: int = 5
    skus: int = 10
    categories: int = 2
    promotions: int = 2
    visitors: int = 20_000
    seeds: tuple[int, ...] = (1, 2)
    shift_at: int = 10_000
    elasticity_factor: float = 1.6
    intercept_shift: float = -0.3
    weekly_amplitude: float = 0.25
    visitors_per_day: int = 1000
    #: Category indices the shift hits (None: all).
    shift_categories: tuple[int, ...] | None = None
    #: Segment indices the shift hits (None: all).
    shift_segments: tuple[int, ...] | None = None
    #: Engine runs (default: plain, a declared weekday, and change detection with it; a
    #: fixed half-life, e.g. ``--variant half-life=3``, did not pay in the 2026-12-06 run).
    variants: tuple[Variant, ...] = ()
    #: What an outcome from before a detected change counts for (change detection).
    weight_before: float = 0.25
    #: Change detection's false alarms per day of data, and the CUSUM's allowance per day
    #: (``PRICING_CHANGE_ALPHA``, ``PRICING_CHANGE_CUSUM_K``; the service's defaults).
    change_alpha: float = ChangeDetection.alpha
    cusum_k: float = ChangeDetection.cusum_k
    #: Date a single test's detection to the start of a same-direction CUSUM excursion
    #: (``PRICING_CHANGE_CUSUM_DATING``).
    cusum_dating: bool = ChangeDetection.cusum_dating
    #: Visitors before the first fit (the service's: 200 outcomes); refits double from
    #: there to 4x, then come daily.
    first_refit: int = 200
    #: With ``Variant.reweight``: visitors between online updates (the service's updater
    #: runs every 2 s, so at 1,000 visitors a day it folds in every outcome at once; a
    #: batch of 50 is an hour and a bit), the ESS share below which a refit is due at once
    #: (``PRICING_REFIT_ESS_FRACTION``), and the fewest visitors between two refits (6 h
    #: at 1,000 visitors a day: a refit takes minutes, and the service refits every 6 h).
    reweight_every: int = 50
    ess_fraction: float = 0.5
    min_refit_gap: int = 250
    draws: int = 250
    tune: int = 250
    chains: int = 2
    posterior_draws: int = 400
    peers: bool = True
    #: The engine's exploration share and its uniform part (the service's defaults).
    engine_epsilon: float = 0.02
    engine_floor: float = 0.01

    def engine_variants(self) -> tuple[Variant, ...]:
        """The engine runs (``variants``, or the default four)."""
        return self.variants or (Variant(), Variant(weekday=True), Variant(detect=True, weekday=True))

    def drift(self) -> Drift:
        """The drift of every seed's market."""
        return Drift(self.shift_at, self.elasticity_factor, self.intercept_shift,
                     self.weekly_amplitude, self.visitors_per_day, self.shift_categories,
                     self.shift_segments)  # fmt: skip

    def refit_points(self) -> list[int]:
        """``first_refit``, doubled while below 4x it (200, 400), then every simulated day."""
        out, t = [], self.first_refit
        while t < min(4 * self.first_refit, self.visitors):
            out.append(t)
            t *= 2
        day = self.visitors_per_day
        out += list(range(((out[-1] if out else 0) // day + 1) * day, self.visitors, day))
        return sorted(set(out))

    def describe(self) -> str:
        """One line."""
        return (f"{self.segments} segments x {self.skus} SKUs, {self.promotions} promotions, "
                f"T = {self.visitors:,}, seeds {list(self.seeds)}; days of {self.visitors_per_day:,} "
                f"visitors, weekly cycle ±{self.weekly_amplitude:g} (logit), shift at "
                f"{self.shift_at:,}: elasticities x{self.elasticity_factor:g}, intercepts "
                f"{self.intercept_shift:+g}"
                + (f" in categor{'y' if len(self.shift_categories) == 1 else 'ies'} "
                   f"{', '.join(map(str, self.shift_categories))} of {self.categories} only"
                   if self.shift_categories is not None else "")
                + (f" in segment{'' if len(self.shift_segments) == 1 else 's'} "
                   f"{', '.join(map(str, self.shift_segments))} of {self.segments} only"
                   if self.shift_segments is not None else "")
                + f"; engines: {'; '.join(v.name.removeprefix('engine, ') for v in self.engine_variants())} "
                f"(before a detected change: weight {self.weight_before:g}; false alarms "
                f"{self.change_alpha:g} a day, CUSUM allowance {self.cusum_k:g}"
                f"{', test detections dated back to a CUSUM excursion' if self.cusum_dating else ''}); "
                f"first fit at {self.first_refit:,} visitors; NUTS {self.chains} x {self.draws} ({self.tune} tuning); engine ε "
                f"{self.engine_epsilon:g} (uniform {min(self.engine_floor, self.engine_epsilon):g})")  # fmt: skip


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_SCHEMA = {"features": [{"name": "weekday", "kind": "categorical", "levels": list(WEEKDAYS)}]}


def run_engine(market: Market, phases: tuple[Market, ...], drift: Drift, seg: IntArray,
               sku: IntArray, u: FloatArray, seed: int, settings: Settings,
               variant: Variant) -> tuple[IntArray, list[float], list[int], list[int]]:  # fmt: skip
    """Play the stream with the engine, refitting on decayed (or undecayed) cells.

    With ``variant.detect``, each refit first tests the outcomes since the serving
    posterior's fit against its predictive (:func:`pricing.changes.predictive_check`);
    on a detection, the days before the tested window count ``settings.weight_before``.
    With ``variant.weekday``, the weekday is a declared context feature (the request's
    ``context``, as checkout would send it).

    With ``variant.reweight``, every ``settings.reweight_every`` outcomes are folded into
    the serving posterior's block weights
    (:meth:`~pricing.posterior.DemandPosterior.reweight_blocks`), and a refit comes early
    when the smallest block's ESS falls below ``settings.ess_fraction`` of the draws (at
    least ``settings.min_refit_gap`` visitors after the last).

    Returns the actions, shape (T,), each refit's seconds, the visitors at which a change
    was detected, and those at which a refit came early for the ESS.
    """
    logging.getLogger("pymc").setLevel(logging.WARNING)
    rules, offers = engine_guardrails(market), engine_offers(market)
    check_wiring(market, rules, offers)
    served: list[tuple[str, DemandPosterior] | None] = [None]
    policy = ThompsonPricePolicy(lambda: served[0], lambda: rules, n_prices=market.n_prices,
                                 seed=seed, epsilon=settings.engine_epsilon,
                                 floor=settings.engine_floor)  # fmt: skip
    index = {o.promotion.key: k for k, o in enumerate(offers)}
    n, days = len(seg), int(drift.day(len(seg) - 1)) + 1
    trials = np.zeros((days, market.n_segments, market.n_skus, market.n_actions), dtype=np.int64)
    conversions = np.zeros_like(trials)
    tables = np.stack([m.context_probability_table[0] for m in phases])
    phase = drift.phase(np.arange(n))
    refits, seconds = set(settings.refit_points()), list[float]()
    lines: dict[tuple[int, int, int], LineContext] = {}
    actions = np.empty(n, dtype=np.int64)
    fresh_trials = np.zeros_like(trials)  # outcomes since the serving posterior's fit
    fresh_conversions = np.zeros_like(trials)
    points = ChangePoints[int]()
    fitted_day = 0
    detections: list[int] = []
    early: list[int] = []  # refits an online update's ESS made due
    detection = ChangeDetection(settings.change_alpha, settings.weight_before, cusum=variant.cusum,
                                cusum_k=settings.cusum_k, by_category=not variant.every_category,
                                cusum_dating=settings.cusum_dating)  # fmt: skip
    charts = Cusum()
    # Online updates (variant.reweight): outcomes since the last update, the posterior as
    # fitted (the change test reads it, as the service reads the snapshot's own draws),
    # and whether a block's ESS made a refit due.
    pending: list[OutcomeRow] = []
    fitted: DemandPosterior | None = None
    last_refit, ess_due = 0, False
    ratio = market.effective_prices / market.list_price_minor[:, None]
    keys = [None, *(p.key for p in market.promotions)]
    for t in range(n):
        if t in refits or ess_due:
            started = time.perf_counter()
            if variant.detect and fitted is not None:
                window_days = (t - last_refit) / settings.visitors_per_day
                level, threshold = detection.window(window_days)
                test = predictive_check(fitted, _cells(market, fresh_trials,
                                        fresh_conversions, variant, 0, 0.0, ChangePoints(), 1.0),
                                        alpha=level)  # fmt: skip
                began, before = None, charts
                if variant.cusum:  # labels sort in time: zero-padded day numbers
                    charts, began = charts.step(test.pooled_z, f"{fitted_day:06d}", detection.cusum_k,
                                                threshold, window_days)  # fmt: skip
                if test.detected:  # as the service: where it shows (every category: None)
                    start = int(detection.detection_label(before, test.pooled_z, f"{fitted_day:06d}"))
                    points = points.moved(start, test.moved_categories()
                                          if detection.by_category else None)  # fmt: skip
                    print(f"    seed {seed}: the test found a change at visitor {t:,}, dated day "
                          f"{start} (window from day {fitted_day})", flush=True)  # fmt: skip
                    charts = Cusum()
                    detections.append(t)
                elif began is not None:
                    points = points.moved(int(began), None)
                    print(f"    seed {seed}: the CUSUM found a change at visitor {t:,}, dated day "
                          f"{int(began)}", flush=True)  # fmt: skip
                    detections.append(t)
            today = int(drift.day(t))
            posterior = _fit(market, trials, conversions, today, variant, points, seed,
                             len(seconds), settings)  # fmt: skip
            served[0] = (f"drift-{seed}-{len(seconds)}", posterior)
            seconds.append(time.perf_counter() - started)
            fresh_trials[:] = 0
            fresh_conversions[:] = 0
            fitted_day = today
            fitted, last_refit, ess_due = posterior, t, False
            pending.clear()
            if t not in refits:
                early.append(t)
        s, j = int(seg[t]), int(sku[t])
        d = int(drift.day(t))
        weekday = d % 7 if variant.weekday else -1
        line = lines.get((s, j, weekday))
        if line is None:
            line = lines[s, j, weekday] = LineContext(
                segment=market.segments[s], sku=market.skus[j],
                category=market.categories[int(market.sku_category[j])], currency=market.currency,
                list_price_minor=int(market.list_price_minor[j]),
                unit_cost_minor=int(market.unit_cost_minor[j]), offers=offers,
                features={"weekday": WEEKDAYS[weekday]} if weekday >= 0 else {},
            )  # fmt: skip
        decision = policy.decide(line)
        k = -1 if decision.promotion is None else index[decision.promotion]
        a = market.action_index(j, decision.price_minor, k)
        bought = bool(u[t] < tables[phase[t], s, j, a])
        trials[d, s, j, a] += 1
        conversions[d, s, j, a] += bought
        fresh_trials[d, s, j, a] += 1
        fresh_conversions[d, s, j, a] += bought
        actions[t] = a
        if variant.reweight and served[0] is not None:
            pending.append((line.segment, line.sku, line.category, float(ratio[j, a]),
                            keys[int(market.action_promotion[a]) + 1],
                            json.dumps(line.features) if line.features else None, 1, int(bought)))  # fmt: skip
            if len(pending) >= settings.reweight_every:
                version, current = served[0]
                shared, blocks = outcome_log_likelihood(current, pending, blocks=True)
                current = current.reweight_blocks(shared, blocks)
                served[0] = (version, current)
                pending.clear()
                ess_due = (current.ess < settings.ess_fraction * current.n_draws
                           and t + 1 - last_refit >= settings.min_refit_gap)  # fmt: skip
    return actions, seconds, detections, early


def _cells(market: Market, trials: IntArray, conversions: IntArray, variant: Variant,
           today: int, half_life: float, points: ChangePoints[int], weight_before: float) -> Cells:  # fmt: skip
    """Cells of the (day, segment, SKU, action) counts, each day weighted by its age (time
    decay) and by whether it precedes its category's detected change; the days from the
    change on are the new regime (:attr:`pricing.cells.CellRecord.regime`), as in the
    service."""
    ratio = market.effective_prices / market.list_price_minor[:, None]
    keys = ["", *(p.key for p in market.promotions)]
    schema = ContextSchema.from_dict(WEEKDAY_SCHEMA if variant.weekday else None)
    records = []
    for d, s, j, a in zip(*np.nonzero(trials), strict=True):
        category = market.categories[int(market.sku_category[j])]
        change_day = points.start(category)
        weight = decay_weight(today - d, half_life) * change_weight(
            today - d, None if change_day is None else today - change_day, weight_before)
        context = tuple(schema.encode({"weekday": WEEKDAYS[d % 7]})) if variant.weekday else ()
        records.append(CellRecord(
            market.segments[s], market.skus[j], category, float(ratio[j, a]), keys[int(market.action_promotion[a]) + 1],
            int(trials[d, s, j, a]), int(conversions[d, s, j, a]), context, weight=weight,
            regime=change_day is not None and d >= change_day,
        ))  # fmt: skip
    marked = {c for c in market.categories if points.start(c) is not None}
    return Cells.from_records(records, schema.columns, regime_categories=marked if points else None)


def _fit(market: Market, trials: IntArray, conversions: IntArray, today: int, variant: Variant,
         points: ChangePoints[int], seed: int, number: int, settings: Settings) -> DemandPosterior:  # fmt: skip
    """Refit on every day's cells so far (:func:`_cells`)."""
    cells = _cells(market, trials, conversions, variant, today, variant.half_life, points,
                   settings.weight_before)  # fmt: skip
    model = DemandModel(model_config=None if variant.category_shift else {"regime_category_sd": 0.0},
                        sampler_config={
        "method": "nuts", "draws": settings.draws, "tune": settings.tune, "chains": settings.chains,
        "random_seed": seed * 1000 + number, "retry_target_accept": None, "max_draws": 0,
    }).fit(cells)  # fmt: skip
    meta: dict[str, Any] = {"version": f"drift-{seed}-{number}"}
    if variant.weekday:
        meta["context_schema"] = WEEKDAY_SCHEMA
    return model.posterior(settings.posterior_draws, meta=meta)


def run_vw(market: Market, phases: tuple[Market, ...], drift: Drift, seg: IntArray,
           sku: IntArray, u: FloatArray, seed: int) -> IntArray | None:  # fmt: skip
    """VW's actions (in the peers' environment), or None when it is unavailable."""
    try:
        python = peer_python(None)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"VW unavailable ({exc})", flush=True)
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stream.npz"
        np.savez(path, prob=np.stack([m.context_probability_table[0] for m in phases]),
                 margin=market.margin_table.astype(float),
                 ratio=market.action_prices / market.list_price_minor[:, None],
                 seg=seg, sku=sku, u=u, phase=drift.phase(np.arange(len(seg))))  # fmt: skip
        cfg = {"seed": seed, "n_prices": market.n_prices,
               "list": market.list_price_minor.astype(float).tolist()}  # fmt: skip
        out = subprocess.run([python, "-c", VW_SCRIPT, str(path), json.dumps(cfg)],
                             check=True, capture_output=True, text=True)  # fmt: skip
    return np.asarray(json.loads(out.stdout.strip().splitlines()[-1]), dtype=np.int64)


def trailing_share(expected: FloatArray, oracle: FloatArray, window: int = WINDOW) -> FloatArray:
    """Share of the oracle's expected profit over the trailing ``window`` visitors, (T,)."""
    ce = np.concatenate([[0.0], np.cumsum(expected)])
    co = np.concatenate([[0.0], np.cumsum(oracle)])
    t = np.arange(1, len(expected) + 1)
    lo = np.maximum(t - window, 0)
    out: FloatArray = (ce[t] - ce[lo]) / np.maximum(co[t] - co[lo], 1e-9)
    return out


def recovery(share: FloatArray, shift: int, target: float) -> int | None:
    """Visitors after ``shift`` until the trailing share (whose window lies wholly after the
    shift) first reaches ``target``; None if it never does."""
    after = np.flatnonzero(share[shift + WINDOW - 1:] >= target)
    return int(after[0]) + WINDOW if len(after) else None


def summarize_run(expected: FloatArray, oracle: FloatArray, shift: int) -> dict[str, Any]:
    """Shares before/after the shift and the two recovery times."""
    share = trailing_share(expected, oracle)
    before = float(share[shift - 1])
    return {
        "share_total": float(expected.sum() / oracle.sum()),
        "share_before": float(expected[:shift].sum() / oracle[:shift].sum()),
        "share_after": float(expected[shift:].sum() / oracle[shift:].sum()),
        "window_before": before,
        "recovery_own": recovery(share, shift, before - 0.02),
        "recovery_oracle": recovery(share, shift, 0.98),
        "curve": share[WINDOW - 1::250].round(4).tolist(),
    }


def run(settings: Settings, verbose: bool = True) -> list[dict[str, Any]]:
    """Play every seed with every policy."""
    drift = settings.drift()
    results = []
    for seed in settings.seeds:
        market = Market.random(settings.segments, settings.skus, settings.categories,
                               settings.promotions, seed)  # fmt: skip
        phases = drift.markets(market)
        seg, sku = market.visitors(settings.visitors, seed)
        u = market.purchase_draws(settings.visitors, seed)
        phase = drift.phase(np.arange(settings.visitors))
        oracle_actions = phased(phases, phase, "oracle", seg, sku).astype(np.int64)
        oracle = phased(phases, phase, "expected_profit", seg, sku, oracle_actions)
        detections: dict[str, list[int]] = {}
        early_refits: dict[str, list[int]] = {}
        played: dict[str, IntArray] = {
            "static (list price)": np.array([market.list_action(j) for j in sku], dtype=np.int64),
        }
        for variant in settings.engine_variants():
            started = time.perf_counter()
            actions, fits, found, early = run_engine(market, phases, drift, seg, sku, u, seed,
                                                     settings, variant)  # fmt: skip
            played[variant.name] = actions
            detections[variant.name] = found
            early_refits[variant.name] = early
            if verbose:
                print(f"seed {seed} {variant.name}: {time.perf_counter() - started:.0f} s "
                      f"({len(fits)} refits, {sum(fits):.0f} s; {len(early)} early for the ESS); "
                      f"changes detected at {found}", flush=True)  # fmt: skip
        if settings.peers:
            vw = run_vw(market, phases, drift, seg, sku, u, seed)
            if vw is not None:
                played["vw-epsilon"] = vw
        for name, actions in played.items():
            expected = phased(phases, phase, "expected_profit", seg, sku, actions)
            summary = summarize_run(expected, oracle, settings.shift_at)
            summary.update(policy=name, seed=seed, detections=detections.get(name),
                           early_refits=early_refits.get(name))
            results.append(summary)
            if verbose:
                print(f"  {name:<32} {100 * summary['share_total']:5.1f} % of the moving oracle "
                      f"(before {100 * summary['share_before']:.1f}, after "
                      f"{100 * summary['share_after']:.1f}); recovery "
                      f"{summary['recovery_own']} / {summary['recovery_oracle']}", flush=True)  # fmt: skip
    return results


def parse_variant(text: str) -> Variant:
    """``plain``, ``half-life=H``, ``detect``, ``weekday``, ``global-shift``, ``cusum``,
    ``every-category``, ``reweight``, joined with ``+``."""
    half_life, detect, weekday, category_shift, cusum, every = 0.0, False, False, True, False, False
    reweight = False
    for part in text.split("+"):
        key, _, value = part.strip().partition("=")
        if key == "half-life":
            half_life = float(value)
        elif key == "global-shift":
            category_shift = False
        elif key == "cusum":
            cusum = True
        elif key == "every-category":
            every = True
        elif key == "reweight":
            reweight = True
        elif key in ("detect", "weekday", "plain"):
            detect, weekday = detect or key == "detect", weekday or key == "weekday"
        else:
            raise argparse.ArgumentTypeError(f"--variant: unknown part {part!r}")
    return Variant(half_life, detect, weekday, category_shift, cusum, every, reweight)


def _fmt_recovery(values: list[int | None]) -> str:
    if any(v is None for v in values):
        reached = [v for v in values if v is not None]
        return f"- ({len(reached)} of {len(values)} seeds reached it)" if reached else "-"
    return f"{np.mean([v for v in values if v is not None]):,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table, one row per policy (mean over seeds)."""
    rows = ["| policy | % of moving oracle (all) | before the shift | after the shift | "
            "recovery to own pre-shift level −2 pts (visitors) | recovery to ≥ 98 % of oracle |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in dict.fromkeys(r["policy"] for r in results):
        mine = [r for r in results if r["policy"] == name]
        mean = {k: 100 * float(np.mean([r[k] for r in mine]))
                for k in ("share_total", "share_before", "share_after")}  # fmt: skip
        rows.append(f"| {name} | {mean['share_total']:.1f} | {mean['share_before']:.1f} | "
                    f"{mean['share_after']:.1f} | {_fmt_recovery([r['recovery_own'] for r in mine])} | "
                    f"{_fmt_recovery([r['recovery_oracle'] for r in mine])} |")  # fmt: skip
    return "\n".join(rows)


def plot(results: list[dict[str, Any]], settings: Settings, path: Path = PLOT) -> None:
    """Trailing 1,000-visitor share of the moving oracle, per policy (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = settings.seeds[0]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for r in (r for r in results if r["seed"] == seed):
        x = WINDOW + 250 * np.arange(len(r["curve"]))
        ax.plot(x, 100 * np.asarray(r["curve"]), label=r["policy"], lw=1.4)
    ax.axvline(settings.shift_at, color="k", ls=":", lw=1)
    ax.text(settings.shift_at, ax.get_ylim()[0], " shift", va="bottom")
    ax.set_xlabel("visitors")
    ax.set_ylabel("% of the moving oracle's expected profit\n(trailing 1,000 visitors)")
    ax.set_title(f"Drifting demand (seed {seed}): weekly cycle, then a shift")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_doc(results: list[dict[str, Any]], settings: Settings, seconds: float,
              section: str = "", command: str = "python -m benchmarks.drift") -> None:  # fmt: skip
    """Replace the drift section of docs/benchmarks.md (``drift-<section>`` if given)."""
    begin, end = (f"<!-- drift-{section}:begin -->", f"<!-- drift-{section}:end -->") if section else (BEGIN, END)
    image = f"drift-{section}.png" if section else PLOT.name
    plot(results, settings, PLOT.with_name(image))
    vw = [r for r in results if r["policy"] == "vw-epsilon"]
    lines = [
        begin,
        "## Drift: demand that moves" + (f" ({section.replace('-', ' ')})" if section else ""),
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; run time {seconds / 60:.1f} min; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"- command: `{command}`",
        f"- setting: {settings.describe()}",
        "",
        table(results),
        "",
        f"![trailing share of the moving oracle](img/{image})",
        "",
        "Findings:",
        "",
    ]
    for seed in settings.seeds:
        mine = {r["policy"]: r for r in results if r["seed"] == seed}
        lines.append(f"- Seed {seed}, after the shift: " + "; ".join(
            f"{name} {100 * r['share_after']:.1f} % (back within 2 points of its pre-shift level "
            f"after {r['recovery_own']:,} visitors)" if r["recovery_own"] is not None else
            f"{name} {100 * r['share_after']:.1f} % (never back within 2 points of its pre-shift level)"
            for name, r in mine.items() if name != "static (list price)"
        ) + ".")  # fmt: skip
    def after(name: str) -> float | None:
        mine = [r["share_after"] for r in results if r["policy"] == name]
        return 100 * float(np.mean(mine)) if mine else None

    def total(name: str) -> float | None:
        mine = [r["share_total"] for r in results if r["policy"] == name]
        return 100 * float(np.mean(mine)) if mine else None

    base = after("engine, no decay")
    for variant in settings.engine_variants():
        runs = [r for r in results if r["policy"] == variant.name]
        value = after(variant.name)
        if not runs or value is None or variant == Variant():
            continue
        found = "; ".join(f"seed {r['seed']}: " + (", ".join(f"{t:,}" for t in r["detections"])
                                                   if r.get("detections") else "none")
                          for r in runs)  # fmt: skip
        lines.append(
            f"- {variant.name}: {total(variant.name):.1f} % of the moving oracle over the run, "
            f"{value:.1f} % after the shift"
            + (f" ({value - base:+.1f} points against no decay)" if base is not None else "")
            + (f"; changes detected at visitor {found}" if variant.detect else "")
            + ("; refits made early by a block's ESS: " + "; ".join(
                f"seed {r['seed']}: {len(r.get('early_refits') or [])}" for r in runs)
               if variant.reweight else "") + "."
        )  # fmt: skip
    if vw:
        lines.append(
            f"- VW (ε = 0.05, online updates after every visitor): "
            f"{100 * np.mean([r['share_total'] for r in vw]):.1f} % of the moving oracle over the run, "
            f"{100 * np.mean([r['share_after'] for r in vw]):.1f} % after the shift."
        )  # fmt: skip
    lines += [
        "- How each engine learns: *half-life* weighs every outcome `0.5 ** (age / h)` in each "
        "refit (`PRICING_DEMAND_HALF_LIFE_DAYS`); *change detection* tests the outcomes since the "
        "serving posterior's fit against its predictive, per (segment, category) and over the "
        "market, in level and in slope (*CUSUM*: also accumulated over consecutive refits), "
        "and after a detection, in the categories where it shows (a screen per category, "
        "Holm at 5 %; every category when the rest still show it pooled, or with "
        "*every category*), fits a shift of intercept and log elasticity common to those "
        "categories, with a zero-sum deviation per category, for their outcomes from the "
        "change on (folded into the draws) while their older ones count "
        f"{settings.weight_before:g} (`PRICING_CHANGE_DETECTION`, `PRICING_CHANGE_WEIGHT_BEFORE`; "
        "`pricing/changes.py`); *weekday declared* gives the model the day of the week as a "
        "context feature (the service fills a declared `weekday` from the quote's time), so "
        "the weekly cycle becomes a day-of-week intercept instead of noise.",
        "- *Online updates* (as the service's updater between refits): every "
        f"{settings.reweight_every} outcomes are folded into the serving posterior's (segment, "
        "category) block weights (`PRICING_REWEIGHT_BLOCKS`), and a refit comes early when the "
        f"smallest block's ESS falls below {settings.ess_fraction:.0%} of the draws "
        f"(`PRICING_REFIT_ESS_FRACTION`), at least {settings.min_refit_gap:,} visitors after the "
        "last. Engines without them keep the posterior fixed between refits."
        if any(v.reweight for v in settings.engine_variants()) else
        "- Not modelled here: the service's online reweighting between refits (the posterior "
        "is fixed between daily refits in this benchmark).",
        end,
    ]
    replace_section(begin, end, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 x 3 market, 4,000 visitors, one seed")
    parser.add_argument("--seeds", default=None,
                        help="N (seeds 1..N) or a comma-separated list of seeds, e.g. '3,4' or '3,'")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--engine-epsilon", type=float, default=Settings.engine_epsilon,
                        help="the engine's exploration share (production default 0.02)")  # fmt: skip
    parser.add_argument("--engine-floor", type=float, default=Settings.engine_floor,
                        help="its uniform part (>= the share: all uniform)")  # fmt: skip
    parser.add_argument("--weight-before", type=float, default=Settings.weight_before,
                        help="what an outcome from before a detected change counts for")  # fmt: skip
    parser.add_argument("--change-alpha", type=float, default=Settings.change_alpha,
                        help="change detection's false alarms per day of data")  # fmt: skip
    parser.add_argument("--cusum-k", type=float, default=Settings.cusum_k,
                        help="the CUSUM's allowance per day, in sd of a day's surprise")  # fmt: skip
    parser.add_argument("--cusum-dating", action="store_true",
                        help="date a single test's detection to the start of a same-direction CUSUM "
                             "excursion under way (PRICING_CHANGE_CUSUM_DATING; default: its window's day)")  # fmt: skip
    parser.add_argument("--elasticity-factor", type=float, default=Settings.elasticity_factor,
                        help="the shift's factor on every elasticity (1 and --intercept-shift 0: "
                             "no shift, for false alarms)")  # fmt: skip
    parser.add_argument("--intercept-shift", type=float, default=Settings.intercept_shift,
                        help="the shift's move of every intercept (logit)")  # fmt: skip
    parser.add_argument("--shift-categories", type=lambda v: tuple(int(c) for c in v.split(",")),
                        default=None, help="category indices the shift hits, e.g. '0' (default: all)")
    parser.add_argument("--shift-segments", type=lambda v: tuple(int(c) for c in v.split(",")),
                        default=None, help="segment indices the shift hits, e.g. '0' (default: all)")
    parser.add_argument("--first-refit", type=int, default=Settings.first_refit,
                        help="visitors before the first fit (default: the service's 200); refits "
                             "double from there to 4x, then come daily ('500': the runs before "
                             "2026-12-06 20:15)")  # fmt: skip
    parser.add_argument("--section", default="",
                        help="write docs/benchmarks.md section drift-SECTION (default: the drift section)")
    parser.add_argument("--variant", action="append",
                        help="an engine run, e.g. 'plain', 'half-life=3', 'weekday', "
                             "'detect+weekday' (repeatable; default: Settings.engine_variants)")  # fmt: skip
    args = parser.parse_args(argv)
    settings = Settings()
    if args.quick:
        settings = Settings(segments=2, skus=3, categories=1, visitors=4000, seeds=(1,),
                            shift_at=2000, visitors_per_day=500, draws=100, tune=100,
                            posterior_draws=200, first_refit=250)  # fmt: skip
    changes: dict[str, Any] = {"engine_epsilon": args.engine_epsilon, "engine_floor": args.engine_floor,
                               "weight_before": args.weight_before, "change_alpha": args.change_alpha,
                               "cusum_k": args.cusum_k, "elasticity_factor": args.elasticity_factor,
                               "intercept_shift": args.intercept_shift,
                               "cusum_dating": args.cusum_dating}
    if args.first_refit != Settings.first_refit:
        changes["first_refit"] = args.first_refit
    if args.seeds:
        changes["seeds"] = (tuple(int(v) for v in args.seeds.split(",") if v.strip()) if "," in args.seeds
                            else tuple(range(1, int(args.seeds) + 1)))  # fmt: skip
    if args.no_peers:
        changes["peers"] = False
    if args.shift_categories is not None:
        changes["shift_categories"] = args.shift_categories
    if args.shift_segments is not None:
        changes["shift_segments"] = args.shift_segments
    if args.variant:
        changes["variants"] = tuple(parse_variant(v) for v in args.variant)
    settings = Settings(**{**asdict(settings), **changes})
    print(settings.describe(), flush=True)
    started = time.perf_counter()
    results = run(settings)
    print(table(results))
    if not (args.quick or args.no_doc):
        command = " ".join(["python -m benchmarks.drift", *(argv if argv is not None else sys.argv[1:])])
        write_doc(results, settings, time.perf_counter() - started, args.section, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
