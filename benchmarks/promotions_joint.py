"""Profit of joint price × promotion selection vs contextual-bandit peers, on the same customers.

    python -m benchmarks.promotions_joint                # full run; writes docs/benchmarks.md and a plot
    python -m benchmarks.promotions_joint --quick        # tiny market, engine only, prints only
    python -m benchmarks.promotions_joint --no-peers --seeds 1 --visitors 5000

Setting
-------
Each seed draws a market from :class:`experiments.simulator.Market` (segments with an
arrival mix, SKUs with list price, unit cost and category, ground-truth logistic demand
of the engine's model form, promotions with a framing lift) and a stream of visitors with
one uniform purchase draw each. Every policy plays the *same* visitors with the *same*
draws: a visitor buys when its draw is below the true purchase probability of the action
served, so where two policies serve the same action they see the same outcome.

Actions are a SKU's candidate prices (list × 0.70, 0.75, ..., 1.30) with no promotion or
with one of the promotions. Profit of a visitor is (price − discount − unit cost −
free-shipping cost) on a purchase, 0 otherwise.

Policies
--------
static
    List price, no promotion.
oracle
    The best candidate action for the visitor's (segment, SKU) under the true demand: the
    100 % reference.
engine
    :class:`pricing.policy.ThompsonPricePolicy` with an :class:`~pricing.promotions.Offer`
    for every promotion and guardrails whose ladder is exactly the simulator's candidate
    prices (checked at start). It learns as in production: decisions and outcomes
    accumulate into :class:`~pricing.cells.Cells` (segment, SKU, effective price ratio,
    promotion), and :class:`~pricing.demand.DemandModel` is refitted with NUTS after
    ``first_refit``, 2 × ``first_refit``, 4 × ... visitors; the new posterior is used
    whatever its diagnostics (no publication gate). Before the first fit the engine has
    no posterior and serves the list price.
vw-epsilon, vw-squarecb
    Vowpal Wabbit ``--cb_explore_adf`` with ``--epsilon 0.05`` or ``--squarecb``, learning
    after every visitor. Shared features: segment and SKU; action features: price level,
    price ratio, promotion and price level × promotion; ``-q sa`` crosses them. Cost =
    −profit / list price.
mabwiser-lints
    MABWiser ``LearningPolicy.LinTS`` (alpha 0.25, about the reward noise) with one arm per
    candidate action and a one-hot segment + SKU context, reward = profit / list price,
    updated every 10 visitors (one visitor at a time is ~6 ms per visitor in MABWiser).

The peers run in their own environment (``benchmarks/.venv-peers``, made on demand with
``pip install vowpalwabbit mabwiser numpy``; never an engine dependency) as a subprocess
that rebuilds each market from JSON with :mod:`experiments.simulator` and checks that it
plays the same stream (hash of visitors and draws).

Reported per policy (mean ± standard error over seeds): realised profit as % of the
oracle's realised profit, expected profit of the actions served as % of the oracle's
(the same without purchase noise), the share of the static → oracle gap captured, the
expected-profit share over the last quarter of the visitors, and regret vs the oracle.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.report import DOC, replace_section
from experiments.simulator import FAMILIES, Market, stream_digest, summarize
from pricing.cells import CellRecord, Cells
from pricing.context import ContextSchema
from pricing.demand import DemandModel
from pricing.guardrails import GuardrailSet, ProductFacts, Rule
from pricing.policy import LineContext, ThompsonPricePolicy
from pricing.posterior import DemandPosterior
from pricing.priors import list_price_anchors
from pricing.promotions import Offer, Promotion
from pricing.safe_start import JointSafetyBudget

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PEERS = Path(__file__).resolve().parent / ".venv-peers"
PEER_PACKAGES = ("vowpalwabbit", "mabwiser", "numpy")
PLOT = DOC.parent / "img" / "promotions_joint.png"
BEGIN, END = "<!-- promotions-joint:begin -->", "<!-- promotions-joint:end -->"
PEER_POLICIES = ("vw-epsilon", "vw-squarecb", "mabwiser-lints")
ORDER = ("oracle", "engine", *PEER_POLICIES, "static")
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

PEER_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from experiments.simulator import FAMILIES, Market, stream_digest, summarize

config = json.loads(sys.stdin.read())
T, n_points = int(config["visitors"]), int(config["n_points"])


def log(message):
    print(message, file=sys.stderr, flush=True)


def vw_policy(market, seg, sku, ctx, u, seed, args):
    import vowpalwabbit

    vw = vowpalwabbit.Workspace(f"{args} -q sa --quiet --random_seed {seed}")
    rng = np.random.default_rng([seed, 17])
    n_prices, A = market.n_prices, market.n_actions
    lines = []
    for j in range(market.n_skus):
        rows = []
        for a in range(A):
            i, o = a % n_prices, a // n_prices
            ratio = market.action_prices[j, a] / market.list_price_minor[j]
            rows.append(f"|a p{i} k{o} p{i}k{o} r:{ratio:.4f}")
        lines.append(rows)
    shared = [
        "".join(f" {name}={level}" for name, level in market.context_values(x).items())
        for x in range(market.n_contexts)
    ]
    actions = np.empty(T, dtype=np.int64)
    state = market.reference_state()
    for t in range(T):
        s, j = int(seg[t]), int(sku[t])
        example = [f"shared |s seg{s} sku{j}{shared[int(ctx[t])]}", *lines[j]]
        pmf = np.asarray(vw.predict(example), dtype=np.float64)
        cdf = np.cumsum(pmf)
        a = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), A - 1)
        if market.path_dependent:
            bought = u[t] < market.stream_probability([s], [j], [a], [ctx[t]], state)[0]
        else:
            bought = u[t] < market.context_probability_table[ctx[t], s, j, a]
        profit = float(market.margin_table[j, a]) if bought else 0.0
        cost = -profit / float(market.list_price_minor[j])
        example[1 + a] = f"0:{cost:.6f}:{max(pmf[a] / cdf[-1], 1e-6):.6f} " + lines[j][a]
        vw.learn(example)
        actions[t] = a
    vw.finish()
    return actions


def lints_policy(market, seg, sku, ctx, u, seed, alpha, batch):
    from mabwiser.mab import MAB, LearningPolicy

    S, J, A = market.n_segments, market.n_skus, market.n_actions
    levels = market.context_levels[ctx]  # (T, F): one-hot of every non-reference level
    width = [len(f.levels) - 1 for f in market.context_features]
    context = np.zeros((T, S + J + sum(width)))
    context[np.arange(T), seg] = 1.0
    context[np.arange(T), S + sku] = 1.0
    col = S + J
    for i, w in enumerate(width):
        hit = levels[:, i] > 0
        context[np.flatnonzero(hit), col + levels[hit, i] - 1] = 1.0
        col += w
    mab = MAB(arms=list(range(A)), learning_policy=LearningPolicy.LinTS(alpha=alpha), seed=seed)
    rng = np.random.default_rng([seed, 23])
    actions = np.empty(T, dtype=np.int64)
    state = market.reference_state()
    for start in range(0, T, batch):
        stop = min(start + batch, T)
        if start == 0:
            chosen = rng.integers(A, size=stop)  # nothing to predict from yet
        else:
            chosen = np.asarray(mab.predict(context[start:stop]), dtype=np.int64).reshape(-1)
        s, j = seg[start:stop], sku[start:stop]
        _, profit = market.play(s, j, chosen, u[start:stop], ctx[start:stop], state)
        reward = profit / market.list_price_minor[j]
        if start == 0:
            mab.fit(chosen.tolist(), reward.tolist(), context[start:stop])
        else:
            mab.partial_fit(chosen.tolist(), reward.tolist(), context[start:stop])
        actions[start:stop] = chosen
    return actions


results = []
for run in config["runs"]:
    market = Market.from_dict(run["market"])
    seed = int(run["seed"])
    seg, sku = market.visitors(T, seed)
    ctx = market.contexts(T, seed)
    u = market.purchase_draws(T, seed)
    digest = stream_digest(seg, sku, u, ctx)
    if digest != run["digest"]:
        raise SystemExit(f"stream mismatch for seed {seed}: {digest} != {run['digest']}")
    oracle = market.oracle(seg, sku, ctx)
    oracle_expected = market.stream_expected_profit(seg, sku, oracle, ctx)
    _, oracle_realized = market.play(seg, sku, oracle, u, ctx)
    for name in config["policies"]:
        start = time.perf_counter()
        if name == "vw-epsilon":
            actions = vw_policy(market, seg, sku, ctx, u, seed, "--cb_explore_adf --epsilon 0.05")
        elif name == "vw-squarecb":
            actions = vw_policy(market, seg, sku, ctx, u, seed, "--cb_explore_adf --squarecb")
        elif name == "mabwiser-lints":
            actions = lints_policy(
                market, seg, sku, ctx, u, seed, float(config["lints_alpha"]),
                int(config["lints_batch"]),
            )
        else:
            raise SystemExit(f"unknown peer {name}")
        seconds = time.perf_counter() - start
        _, realized = market.play(seg, sku, actions, u, ctx)
        summary = summarize(
            market.stream_expected_profit(seg, sku, actions, ctx), oracle_expected, realized,
            oracle_realized,
            n_points,
        )
        summary.update(policy=name, seed=seed, seconds=seconds, digest=digest)
        results.append(summary)
        log(f"  peers: seed {seed} {name:<15} {seconds:6.1f} s  "
            f"{100 * summary['profit'] / summary['oracle_profit']:.1f} % of oracle profit")
    if run.get("save"):  # one file per seed, written whole, so a long run can be resumed
        done = [r for r in results if r["seed"] == seed]
        tmp = run["save"] + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"settings": run["key"], "results": done}, fh)
        import os
        os.replace(tmp, run["save"])
print(json.dumps(results))
"""


#: Settings that change what the peers play (their results can be shared across engine variants).
PEER_FIELDS = frozenset({"segments", "skus", "categories", "promotions", "visitors", "n_points",
                         "peers", "lints_alpha", "lints_batch", "context_features",
                         "market_family"})  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Sizes and sampler settings of one benchmark run."""

    segments: int = 5
    skus: int = 10
    categories: int = 2
    promotions: int = 2
    visitors: int = 20_000
    seeds: tuple[int, ...] = (1, 2, 3)
    #: Visitors before the first fit, then doubling: 200 as the service's updater
    #: (``JobRuntime.min_outcomes``; its next full refit when the outcomes have doubled).
    #: Runs before 2026-12-07 used 500 (their doc sections say so in their setting line).
    first_refit: int = 200
    draws: int = 300
    tune: int = 300
    chains: int = 2
    posterior_draws: int = 500
    n_points: int = 50
    peers: tuple[str, ...] = PEER_POLICIES
    lints_alpha: float = 0.25
    lints_batch: int = 10
    context_features: int = 0
    engine_epsilon: float = 0.02
    #: The uniform part of the engine's exploration (PRICING_MIN_PROPENSITY; the rest goes to
    #: ladder neighbours). At or above ``engine_epsilon``: all uniform, as before it existed.
    engine_floor: float = 0.01
    #: Demand family of the simulated markets (experiments.simulator.FAMILIES).
    market_family: str = "logistic"
    #: Safe start's α (PRICING_MAX_LOSS_VS_LIST); None: off, as in production by default.
    engine_max_loss: float | None = None
    #: Centre each category's elasticity prior where its list prices are optimal
    #: (pricing.priors.list_price_anchors; PRICING_PRIOR_AT_LIST in the service).
    engine_prior_at_list: bool = False

    def describe(self) -> str:
        """One line with the chosen sizes."""
        return (
            f"{self.segments} segments x {self.skus} SKUs x {self.categories} categories, "
            f"{self.promotions} promotions, {self.context_features} context features, "
            f"{self.market_family} demand, "
            f"T = {self.visitors:,} visitors, seeds {list(self.seeds)}; "
            f"engine ε = {self.engine_epsilon:g} (uniform {min(self.engine_floor, self.engine_epsilon):g}), refits after {self.first_refit:,} x 2^k visitors, NUTS {self.chains} chains x "
            f"{self.draws} draws ({self.tune} tuning), {self.posterior_draws} posterior draws; "
            f"peers: {', '.join(self.peers) if self.peers else 'none'}"
        )

    def key(self) -> dict[str, Any]:
        """Everything but the seeds, as saved with each seed's results (to resume a run)."""
        out = asdict(self)
        del out["seeds"]
        out["peers"] = list(self.peers)
        # Results saved before these settings existed stay valid while they keep their defaults.
        if not self.context_features:
            del out["context_features"]
        if self.engine_epsilon == 0.05:
            del out["engine_epsilon"]
        if self.engine_floor >= self.engine_epsilon:  # all uniform: what ran before it existed
            del out["engine_floor"]
        if self.market_family == "logistic":
            del out["market_family"]
        if self.engine_max_loss is None:
            del out["engine_max_loss"]
        if not self.engine_prior_at_list:
            del out["engine_prior_at_list"]
        return out

    def peer_key(self) -> dict[str, Any]:
        """The part of :meth:`key` that the peers' results depend on."""
        key = self.key()
        return {k: v for k, v in key.items() if k in PEER_FIELDS}

    def market(self, seed: int) -> Market:
        """The market of one seed."""
        return Market.random(
            self.segments, self.skus, self.categories, self.promotions, seed,
            n_context_features=self.context_features, family=self.market_family,
        )  # fmt: skip

    def refit_points(self) -> list[int]:
        """Visitor counts after which the engine refits (a doubling schedule below T)."""
        out, t = [], self.first_refit
        while t < self.visitors:
            out.append(t)
            t *= 2
        return out


@dataclass(frozen=True)
class Stream:
    """One seed's visitors: segment, SKU and context indices and purchase draws, each (T,)."""

    segment: IntArray
    sku: IntArray
    context: IntArray
    u: FloatArray


@dataclass
class EngineRun:
    """The engine's actions on one stream and what each refit cost."""

    actions: IntArray
    explored: NDArray[np.bool_]
    #: The logged propensity of each action (empty for runs saved before it was kept).
    propensity: FloatArray = field(default_factory=lambda: np.empty(0))
    fits: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------- engine wiring
def engine_guardrails(market: Market) -> GuardrailSet:
    """Guardrails whose price ladder is exactly each SKU's candidate prices.

    One SKU rule per SKU: floor and ceiling at the ends of its candidates and a step equal
    to their (even) spacing.

    Raises
    ------
    ValueError
        If a SKU's candidate prices are not evenly spaced multiples of their spacing.
    """
    rules = []
    for j, sku in enumerate(market.skus):
        prices = market.prices[j]
        steps = np.diff(prices)
        step = int(steps[0]) if len(steps) else 1
        if (steps != step).any() or prices[0] % step:
            raise ValueError(f"candidate prices of {sku} are not an even grid: {prices.tolist()}")
        rules.append(Rule("sku", sku, floor=int(prices[0]), ceiling=int(prices[-1]), step=step))
    return GuardrailSet(rules=tuple(rules))


def engine_offers(market: Market) -> tuple[Offer, ...]:
    """One unlimited offer per promotion of the market, in the market's order."""
    offers = []
    for spec in market.promotions:
        promotion = Promotion(
            key=spec.key,
            kind=spec.kind,
            percent_off=Decimal(spec.basis_points) / 100 if spec.kind == "percent_off" else None,
            amount_off_minor=spec.amount_off_minor if spec.kind == "amount_off" else None,
            shipping_cost_minor=spec.shipping_cost_minor,
            currency=market.currency,
        )
        offers.append(Offer(promotion))
    return tuple(offers)


def check_wiring(market: Market, rules: GuardrailSet, offers: tuple[Offer, ...]) -> None:
    """Assert that the engine sees the simulator's candidate set and promotion economics."""
    for j, sku in enumerate(market.skus):
        facts = ProductFacts(
            sku,
            market.categories[int(market.sku_category[j])],
            int(market.list_price_minor[j]),
            int(market.unit_cost_minor[j]),
        )
        ladder, _ = rules.feasible_prices(facts, n_max=market.n_prices)
        if not np.array_equal(ladder, market.prices[j]):
            raise AssertionError(f"{sku}: engine ladder {ladder} != simulator {market.prices[j]}")
        for k, offer in enumerate(offers):
            ours = offer.promotion.discounts(ladder)
            theirs = market.discounts(np.full(len(ladder), k), market.prices[j])
            if not np.array_equal(ours, theirs) or offer.promotion.cost_minor != int(
                market.promotion_cost(k)
            ):
                raise AssertionError(f"{sku}: promotion {offer.promotion.key} differs")


def run_engine(
    market: Market,
    v: Stream,
    seed: int,
    settings: Settings,
    progress: Callable[[int, str], Any] | None = None,
) -> EngineRun:
    """Play the stream with ThompsonPricePolicy, refitting the demand model on a doubling schedule.

    Each visitor's request carries its context (``market.context_values``), which the
    engine sees through the declared schema (``market.context_schema()``) like the API's.
    """
    logging.getLogger("pymc").setLevel(logging.WARNING)  # one line per refit is enough
    rules = engine_guardrails(market)
    offers = engine_offers(market)
    check_wiring(market, rules, offers)
    served: list[tuple[str, DemandPosterior] | None] = [None]
    policy = ThompsonPricePolicy(
        lambda: served[0],
        lambda: rules,
        epsilon=settings.engine_epsilon,
        floor=settings.engine_floor,
        safety=JointSafetyBudget(settings.engine_max_loss) if settings.engine_max_loss is not None else None,
        n_prices=market.n_prices,
        seed=seed,
    )
    promotion_index = {o.promotion.key: k for k, o in enumerate(offers)}
    contexts = [market.context_values(x) for x in range(market.n_contexts)]
    lines: dict[tuple[int, int, int], LineContext] = {}
    shape = (market.n_contexts, market.n_segments, market.n_skus, market.n_actions)
    trials = np.zeros(shape, dtype=np.int64)
    conversions = np.zeros(shape, dtype=np.int64)
    refits = set(settings.refit_points())
    state = market.reference_state()  # last price seen per cell (reference-price markets)
    n = len(v.segment)
    run = EngineRun(actions=np.empty(n, dtype=np.int64), explored=np.zeros(n, dtype=bool),
                    propensity=np.empty(n))  # fmt: skip
    start = time.perf_counter()
    for t in range(n):
        if t in refits:
            fit = _refit(market, trials, conversions, seed, len(run.fits), settings)
            served[0] = (fit.pop("version"), fit.pop("posterior"))
            fit["visitors"] = t
            run.fits.append(fit)
            if progress is not None:
                progress(
                    0,
                    f"refit at {t:,}: {fit['cells']} cells, {fit['seconds']:.1f} s, "
                    f"{fit['divergences']} div.",
                )
        s, j, x = int(v.segment[t]), int(v.sku[t]), int(v.context[t])
        line = lines.get((s, j, x))
        if line is None:
            line = lines[s, j, x] = LineContext(
                segment=market.segments[s],
                sku=market.skus[j],
                category=market.categories[int(market.sku_category[j])],
                currency=market.currency,
                list_price_minor=int(market.list_price_minor[j]),
                unit_cost_minor=int(market.unit_cost_minor[j]),
                features=contexts[x],
                offers=offers,
            )
        decision = policy.decide(line)
        k = -1 if decision.promotion is None else promotion_index[decision.promotion]
        a = market.action_index(j, decision.price_minor, k)
        if market.path_dependent:
            bought = bool(v.u[t] < market.stream_probability([s], [j], [a], [x], state)[0])
        else:
            bought = bool(v.u[t] < market.context_probability_table[x, s, j, a])
        trials[x, s, j, a] += 1
        conversions[x, s, j, a] += bought
        run.actions[t] = a
        run.explored[t] = "exploration" in decision.reasons
        run.propensity[t] = decision.propensity
        if progress is not None:
            progress(1, "")
    run.seconds = time.perf_counter() - start
    return run


def _refit(
    market: Market,
    trials: IntArray,
    conversions: IntArray,
    seed: int,
    number: int,
    settings: Settings,
) -> dict[str, Any]:
    """Fit the demand model to the cells so far and return its posterior and diagnostics.

    ``trials`` and ``conversions`` have shape (X, S, J, A): context, segment, SKU, action.
    """
    schema = ContextSchema.from_dict(market.context_schema())
    encoded = [tuple(schema.encode(market.context_values(x))) for x in range(market.n_contexts)]
    records = []
    ratio = market.effective_prices / market.list_price_minor[:, None]  # (J, A)
    keys = ["", *(p.key for p in market.promotions)]
    for x, s, j, a in zip(*np.nonzero(trials), strict=True):
        records.append(
            CellRecord(
                market.segments[s],
                market.skus[j],
                market.categories[int(market.sku_category[j])],
                float(ratio[j, a]),
                keys[int(market.action_promotion[a]) + 1],
                int(trials[x, s, j, a]),
                int(conversions[x, s, j, a]),
                context=encoded[x],
            )
        )
    cells = Cells.from_records(records, context_columns=schema.columns)
    anchors = {}
    if settings.engine_prior_at_list:
        catalogue = {
            market.skus[j]: (market.categories[int(market.sku_category[j])],
                             int(market.list_price_minor[j]), int(market.unit_cost_minor[j]))
            for j in range(market.n_skus)
        }  # fmt: skip
        anchors = {"category_log_elasticity_anchor": list_price_anchors(cells, catalogue)}
    model = DemandModel(
        model_config=anchors,
        sampler_config={
            "method": "nuts",
            "draws": settings.draws,
            "tune": settings.tune,
            "chains": settings.chains,
            "random_seed": seed * 1000 + number,
            "retry_target_accept": None,
            "max_draws": 0,
        }
    ).fit(cells)
    d = model.diagnostics_
    version = f"sim-{seed}-{number}"
    meta = {"version": version, "context_schema": schema.to_dict()}
    return {
        "version": version,
        "posterior": model.posterior(settings.posterior_draws, meta=meta),
        "cells": len(cells),
        "seconds": d.seconds,
        "divergences": d.divergences,
        "max_rhat": d.max_rhat,
        "min_ess": d.min_ess_bulk,
        "passed": d.passed,
    }


# ---------------------------------------------------------------------- peers
def peer_python(path: str | None) -> str:
    """The peers' interpreter: ``path``, or ``benchmarks/.venv-peers`` made or completed on demand."""
    if path:
        return path
    python = PEERS / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(PEERS)])
    probe = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in sys.argv[1:]))"
    modules = ("vowpalwabbit", "mabwiser", "numpy")
    if subprocess.run([str(python), "-c", probe, *modules], check=False).returncode:
        subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES])
    return str(python)


def start_peers(
    python: str, runs: list[dict[str, Any]], settings: Settings
) -> subprocess.Popen[str]:
    """Start the peers' subprocess (it plays every run while the engine plays its own)."""
    config = {
        "visitors": settings.visitors,
        "n_points": settings.n_points,
        "policies": list(settings.peers),
        "lints_alpha": settings.lints_alpha,
        "lints_batch": settings.lints_batch,
        "runs": runs,
    }
    proc = subprocess.Popen(
        [python, "-c", PEER_SCRIPT, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config))
    proc.stdin.close()
    return proc


def collect_peers(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Wait for the peers' subprocess and parse its JSON results."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"peers failed with exit code {proc.returncode}")
    results: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return results


# ---------------------------------------------------------------------- aggregation
def aggregate(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per policy: means and standard errors over seeds.

    Parameters
    ----------
    results : list of dict
        :func:`experiments.simulator.summarize` outputs with ``policy`` and ``seed`` keys;
        a ``static`` result per seed is needed for the gap column.
    """
    static = {r["seed"]: r for r in results if r["policy"] == "static"}
    rows = []
    names = sorted({r["policy"] for r in results}, key=lambda n: (*ORDER, n).index(n))
    for name in names:
        runs = [r for r in results if r["policy"] == name]
        pct = np.array([100 * r["profit"] / r["oracle_profit"] for r in runs])
        pct_e = np.array([100 * r["expected_profit"] / r["oracle_expected_profit"] for r in runs])
        late = np.array(
            [100 * r["late_expected_profit"] / r["late_oracle_expected_profit"] for r in runs]
        )
        gap = np.array(
            [
                100
                * (r["expected_profit"] - static[r["seed"]]["expected_profit"])
                / (r["oracle_expected_profit"] - static[r["seed"]]["expected_profit"])
                for r in runs
                if r["seed"] in static
            ]
        )
        regret = np.array([(r["oracle_profit"] - r["profit"]) / 100 for r in runs])
        regret_e = np.array(
            [(r["oracle_expected_profit"] - r["expected_profit"]) / 100 for r in runs]
        )
        rows.append(
            {
                "policy": name,
                "seeds": len(runs),
                "pct": _mean_se(pct),
                "pct_expected": _mean_se(pct_e),
                "gap": _mean_se(gap),
                "late": _mean_se(late),
                "regret": _mean_se(regret),
                "regret_expected": _mean_se(regret_e),
                "regret_per_visitor": float(
                    np.mean(
                        [
                            (r["oracle_expected_profit"] - r["expected_profit"]) / r["visitors"]
                            for r in runs
                        ]
                    )
                ),
                "seconds": float(np.mean([r.get("seconds", 0.0) for r in runs])),
            }
        )
    return rows


def _mean_se(x: FloatArray) -> tuple[float, float]:
    if not len(x):
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def _pm(value: tuple[float, float], digits: int = 1) -> str:
    mean, se = value
    if np.isnan(mean):
        return "-"
    return f"{mean:,.{digits}f}" if np.isnan(se) else f"{mean:,.{digits}f} ± {se:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`aggregate` rows."""
    out = [
        "| policy | profit, % of oracle | expected profit, % of oracle | static→oracle gap captured, % "
        "| last quarter, % of oracle (expected) | regret vs oracle (realised, USD) "
        "| regret vs oracle (expected, USD) | regret per visitor (expected, cents) | seconds per seed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['policy']} | {_pm(r['pct'])} | {_pm(r['pct_expected'])} | {_pm(r['gap'])} "
            f"| {_pm(r['late'])} | {_pm(r['regret'], 0)} | {_pm(r['regret_expected'], 0)} "
            f"| {r['regret_per_visitor']:.2f} | {r['seconds']:.1f} |"
        )
    return "\n".join(out)


# ---------------------------------------------------------------------- plot and document
def plot(results: list[dict[str, Any]], path: Path = PLOT) -> None:
    """Cumulative expected regret vs visitors (mean over seeds, band: ± one s.e.)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    names = [n for n in ORDER if any(r["policy"] == n for r in results) and n != "oracle"]
    for name in names:
        runs = [r for r in results if r["policy"] == name]
        t = np.array(runs[0]["t"], dtype=float)
        regret = np.array([r["cum_expected_regret"] for r in runs]) / 100.0
        mean = regret.mean(axis=0)
        (line,) = left.plot(t, mean, label=name)
        if len(runs) > 1:
            se = regret.std(axis=0, ddof=1) / np.sqrt(len(runs))
            left.fill_between(t, mean - se, mean + se, color=line.get_color(), alpha=0.2)
        # Share of the oracle's expected profit in each of about 10 windows: how good it is *now*.
        keep = np.arange(len(t))[:: -max(len(t) // 10, 1)][::-1]
        shares = []
        for r in runs:
            oracle = np.array(r["cum_oracle_expected_profit"])[keep]
            regret = np.array(r["cum_expected_regret"])[keep]
            d_oracle, d_regret = np.diff(oracle, prepend=0.0), np.diff(regret, prepend=0.0)
            shares.append(100.0 * (d_oracle - d_regret) / d_oracle)
        right.plot(t[keep], np.mean(shares, axis=0), "-o", ms=3, color=line.get_color(), label=name)
    left.set_xlabel("visitors")
    left.set_ylabel("cumulative regret vs oracle (expected profit, USD)")
    left.set_title("Cumulative regret (band: ± 1 s.e. over seeds)")
    right.set_xlabel("visitors")
    right.set_ylabel("expected profit in the window, % of oracle")
    right.set_title("Profit rate per window (mean over seeds)")
    right.set_ylim(bottom=max(0.0, right.get_ylim()[0]))
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


_ORACLE_KEY = {
    "profit": "oracle_profit",
    "expected_profit": "oracle_expected_profit",
    "late_expected_profit": "late_oracle_expected_profit",
}


def _paired(results: list[dict[str, Any]], a: str, b: str, key: str) -> tuple[float, float]:
    """Mean ± s.e. over seeds of policy ``a`` minus policy ``b``, in % of the oracle's ``key``."""
    share = {(r["policy"], r["seed"]): 100 * r[key] / r[_ORACLE_KEY[key]] for r in results}
    seeds = sorted({x for n, x in share if n == a} & {x for n, x in share if n == b})
    return _mean_se(np.array([share[a, x] - share[b, x] for x in seeds]))


def findings(results: list[dict[str, Any]], fits: list[dict[str, Any]]) -> list[str]:
    """Plain statements comparing the engine with every other policy (paired over seeds)."""
    names = {r["policy"] for r in results}
    out = ["Findings:", ""]
    if "engine" not in names:
        return out
    for name in (n for n in ORDER if n in names and n not in ("engine", "oracle")):
        diff, se = _paired(results, "engine", name, "profit")
        late, late_se = _paired(results, "engine", name, "late_expected_profit")
        if np.isnan(se):
            out.append(
                f"- engine vs {name}: {diff:+.1f} points of oracle profit, {late:+.1f} in the last "
                "quarter (expected profit; one seed, no s.e.)."
            )
            continue
        verdict = "ahead of" if diff > 2 * se else "behind" if diff < -2 * se else "level with"
        out.append(
            f"- engine vs {name}: {diff:+.1f} ± {se:.1f} points of oracle profit over the whole run "
            f"(paired over seeds): {verdict} it; {late:+.1f} ± {late_se:.1f} points in the last quarter "
            "(expected profit)."
        )
    if fits:
        div = sum(f["divergences"] for f in fits)
        failed = sum(not f["passed"] for f in fits)
        slowest = max(f["seconds"] for f in fits)
        out.append(
            f"- engine refits: {len(fits)} in all, {sum(f['seconds'] for f in fits):.0f} s of sampling "
            f"(slowest {slowest:.1f} s, up to {max(f['cells'] for f in fits):,} cells), {div} divergent "
            f"transitions; {failed} of {len(fits)} would fail the publication gate (R-hat <= 1.01, bulk "
            "ESS >= 400, no divergences) at these short chains; the benchmark uses them anyway."
        )
    out.append("")
    return out


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets against this run: engine >= 97 % of oracle profit, and engine regret
    <= 0.5 x the best peer's (realised profit, mean over seeds)."""
    by = {r["policy"]: r for r in rows}
    if "engine" not in by:
        return []
    engine = by["engine"]
    pct, se = engine["pct"]
    out = ["| target | measured | |", "|---|---|---|"]
    verdict = "met" if pct >= 97.0 else "**missed**"
    shown = f"{pct:.1f} %" + ("" if np.isnan(se) else f" ± {se:.1f}")
    out.append(f"| engine profit >= 97 % of the oracle's | {shown} | {verdict} |")
    peers = [by[n] for n in PEER_POLICIES if n in by]
    if peers:
        best = min(peers, key=lambda r: r["regret"][0])
        ratio = engine["regret"][0] / best["regret"][0] if best["regret"][0] > 0 else float("nan")
        verdict = "met" if ratio <= 0.5 else "**missed**"
        out.append(
            f"| engine regret <= 0.5 × the best peer's | {ratio:.2f} × {best['policy']}'s "
            f"({engine['regret'][0]:,.0f} vs {best['regret'][0]:,.0f} USD) | {verdict} |"
        )
    return [*out, ""]


TITLES = {
    "promotions-joint": "Joint price × promotion selection: profit vs contextual-bandit peers",
    "decision-quality": "Decision quality at scale: 20 segments × 50 SKUs, 200,000 visitors, 5 seeds",
    "decision-quality-first-fit-200": "Decision quality at scale: 20 segments × 50 SKUs, 200,000 visitors, "
    "5 seeds (first fit at 200 visitors, as the service's)",
}


def write_doc(
    results: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    fits: list[dict[str, Any]],
    settings: Settings,
    command: str,
    seconds: float,
    notes: Sequence[str],
    title: str = "Joint price × promotion selection: profit vs contextual-bandit peers",
    resumed: bool = False,
) -> None:
    """Replace this run's section of docs/benchmarks.md."""
    engine_seconds = sum(r.get("seconds", 0.0) for r in results if r["policy"] == "engine")
    section = "\n".join([
        BEGIN,
        f"## {title}",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; "
        + (f"assembled from per-seed results saved in `benchmarks/results/` (engine play {engine_seconds:.0f} s "
           "in all)" if resumed else f"run time {seconds:.0f} s"),
        f"- command: `{command}` (peers from `benchmarks/.venv-peers`, made on first run)",
        f"- setting: {settings.describe()}. One market and one visitor stream per seed "
        "(`experiments.simulator.Market.random`): base conversion 10-30 % at list price, "
        "elasticities 1-3, promotion lifts 0-0.6 on the logit scale; candidate actions are 13 prices "
        "(list × 0.70 ... 1.30) × (no promotion + each promotion). Every policy sees the same "
        "visitors and the same purchase draws.",
        f"- engine: `ThompsonPricePolicy` (ε = {settings.engine_epsilon:g}) with an offer per promotion and a guardrail ladder equal "
        "to the candidate prices; list price until the first refit; no publication gate. Peers: Vowpal "
        "Wabbit `--cb_explore_adf` with `--epsilon 0.05` or `--squarecb` (`-q sa`, learning every visitor, "
        "cost = −profit / list price), MABWiser LinTS (alpha 0.25, an arm per action, one-hot segment + SKU "
        "context, updated every 10 visitors).",
        "- columns: realised profit and expected profit of the actions served, as % of the oracle's on "
        "the same visitors (mean ± s.e. over seeds); share of the static → oracle gap captured (expected "
        "profit); expected profit as % of the oracle's over the last quarter of the visitors (how good the "
        "policy is once it has learned); regret = oracle − policy, in USD over the whole run and in cents "
        "per visitor.",
        "",
        table(rows),
        "",
        *targets(rows),
        *findings(results, fits),
        *(["Notes on misses and fairness:", ""] if notes else []),
        *(f"- {n}" for n in notes),
        *([""] if notes else []),
        f"![Cumulative regret and profit rate vs visitors](img/{PLOT.name})",
        "",
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)


# ---------------------------------------------------------------------- driver
def run(
    settings: Settings,
    peer_interpreter: str | None,
    verbose: bool = True,
    cache: Path | None = None,
    resume: bool = False,
    peers_from: Path | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Play every seed with every policy; return (per-run summaries, engine fit log).

    The peers play in a subprocess while the engine plays in this one. With ``cache``, each
    seed's results are written to ``cache/engine-seed{N}.json`` and ``cache/peers-seed{N}.json``
    as soon as that seed is done; with ``resume`` too, seeds whose files exist and were made
    with the same settings are read back instead of played again (a long run can be resumed).
    ``peers_from`` is another run's folder whose peers' results are used (an engine variant
    on the same markets and visitors needs not replay the peers).
    """
    print(f"settings: {settings.describe()}", flush=True)
    key = settings.key()
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)

    def saved(kind: str, seed: int) -> dict[str, Any] | None:
        folder = peers_from if kind == "peers" and peers_from is not None else cache
        if folder is None or not (resume or folder is peers_from):
            return None
        path = folder / f"{kind}-seed{seed}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        made = data.get("settings", {})
        if kind == "peers":
            same = {k: v for k, v in made.items() if k in PEER_FIELDS} == settings.peer_key()
        else:
            same = made == key
        if not same:
            print(f"{path}: made with other settings; playing seed {seed} again", flush=True)
            return None
        print(f"{path.name}: reusing the saved results of seed {seed}", flush=True)
        return data

    streams = {}
    for seed in settings.seeds:
        market = settings.market(seed)
        segment, sku = market.visitors(settings.visitors, seed)
        u = market.purchase_draws(settings.visitors, seed)
        streams[seed] = (market, Stream(segment, sku, market.contexts(settings.visitors, seed), u))
    results: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    proc = None
    if settings.peers:
        runs = []
        for seed, (m, v) in streams.items():
            old = saved("peers", seed)
            if old is not None:
                results += old["results"]
                continue
            if peers_from is not None:
                print(f"{peers_from}: no peers' results for seed {seed} (yet)", flush=True)
                continue
            digest = stream_digest(v.segment, v.sku, v.u, v.context)
            runs.append({"seed": seed, "market": m.to_dict(), "digest": digest,
                         "key": key, "save": str(cache / f"peers-seed{seed}.json") if cache else None})  # fmt: skip
        if runs:
            try:
                python = peer_python(peer_interpreter)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"peers unavailable ({exc}); running without them", flush=True)
            else:
                proc = start_peers(python, runs, settings)
    for seed, (market, v) in streams.items():
        old = saved("engine", seed)
        if old is not None:
            results += old["results"]
            fits += old["fits"]
            continue
        done: list[dict[str, Any]] = []
        list_actions = np.array([market.list_action(j) for j in range(market.n_skus)])
        oracle = market.oracle(v.segment, v.sku, v.context)
        done.append(score(market, v, list_actions[v.sku], settings.n_points))
        done[-1].update(policy="static", seed=seed, seconds=0.0)
        done.append(score(market, v, oracle, settings.n_points))
        done[-1].update(policy="oracle", seed=seed, seconds=0.0)
        bar = _progress(settings.visitors, f"engine seed {seed}", verbose)
        engine = run_engine(market, v, seed, settings, bar)
        bar(-1, "")
        done.append(score(market, v, engine.actions, settings.n_points))
        done[-1].update(
            policy="engine",
            seed=seed,
            seconds=engine.seconds,
            late=engine_late_diagnostics(market, v, engine),
        )
        seed_fits = [{"seed": seed, **f} for f in engine.fits]
        print(_line(done[-1]), flush=True)
        if cache is not None:
            path = cache / f"engine-seed{seed}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"settings": key, "results": done, "fits": seed_fits}))
            tmp.replace(path)
        results += done
        fits += seed_fits
    if proc is not None:
        for r in collect_peers(proc):
            results.append(r)
            print(_line(r), flush=True)
    return results, fits


def score(market: Market, v: Stream, actions: IntArray, n_points: int) -> dict[str, Any]:
    """:func:`experiments.simulator.summarize` of candidate actions played on a stream."""
    oracle = market.oracle(v.segment, v.sku, v.context)
    _, oracle_realized = market.play(v.segment, v.sku, oracle, v.u, v.context)
    _, realized = market.play(v.segment, v.sku, actions, v.u, v.context)
    return summarize(
        market.stream_expected_profit(v.segment, v.sku, actions, v.context),
        market.stream_expected_profit(v.segment, v.sku, oracle, v.context),
        realized,
        oracle_realized,
        n_points,
    )


def engine_late_diagnostics(market: Market, v: Stream, engine: EngineRun) -> dict[str, float]:
    """Where the engine's last-quarter expected regret comes from.

    Returns
    -------
    dict
        ``oracle_action`` and ``oracle_option``: share of last-quarter visitors served the
        oracle's action, or at least its promotion choice; ``explored``: share of visitors
        whose action came from the ε-uniform branch; ``regret_explored``: share of the
        last-quarter expected regret incurred on those visitors.
    """
    n = len(v.segment)
    late = slice(n - n // 4, n)
    s, j, x, a = v.segment[late], v.sku[late], v.context[late], engine.actions[late]
    oracle = market.oracle(s, j, x)
    every = market.oracle(v.segment, v.sku, v.context)
    regret = (
        market.stream_expected_profit(v.segment, v.sku, every, v.context)
        - market.stream_expected_profit(v.segment, v.sku, engine.actions, v.context)
    )[late]
    explored = engine.explored[late]
    total = float(regret.sum())
    out = {
        "oracle_action": float(np.mean(a == oracle)),
        "oracle_option": float(np.mean(a // market.n_prices == oracle // market.n_prices)),
        "explored": float(np.mean(explored)),
        "regret_explored": float(regret[explored].sum() / total) if total > 0 else 0.0,
    }
    if market.path_dependent:  # what the price path costs: path-aware vs steady-state profit
        for key, actions in (("reference_loss", engine.actions), ("reference_loss_oracle", every)):
            path = market.stream_expected_profit(v.segment, v.sku, actions, v.context)[late]
            steady = market.expected_profit(s, j, actions[late], x)
            out[key] = float(1.0 - path.sum() / steady.sum())
    return out


def notes(results: list[dict[str, Any]], settings: Settings) -> list[str]:
    """Comments on where the engine misses, and on what favours or handicaps each side."""
    out = []
    late = [r["late"] for r in results if r["policy"] == "engine" and "late" in r]
    if late:

        def mean(key: str) -> float:
            return 100 * float(np.mean([d[key] for d in late]))

        out.append(
            f"Engine misses, last quarter of the visitors: it served the oracle's exact action to "
            f"{mean('oracle_action'):.0f} % of visitors and the oracle's promotion choice to "
            f"{mean('oracle_option'):.0f} %; {mean('explored'):.1f} % of its decisions came from the "
            f"ε = {settings.engine_epsilon:g} uniform branch and those carried {mean('regret_explored'):.0f} % of its "
            "last-quarter regret (a uniform pick among 13 prices × (1 + K) options is costly); the rest "
            "is posterior uncertainty and misestimated demand."
        )
        if all("reference_loss" in d for d in late):
            out.append(
                "Reference prices: customers compare each price with the one the cell's previous visitor "
                "was served, and a rise loses twice what a cut of the same size wins. Over the last quarter "
                f"the engine's price moves cost it {mean('reference_loss'):.1f} % of the expected profit "
                "its actions would earn at steady prices (the oracle, one constant action per cell: "
                f"{mean('reference_loss_oracle'):.2f} %). Its model has no memory of the last price, so "
                "Thompson sampling's draw-to-draw price changes pay the loss aversion, and its elasticity "
                "estimates mix the short-run response (steep after a change) with the long-run one. What "
                "would fix it: the last served price of the cell as a covariate with separate slopes for "
                "rises and cuts (a reference-price term in `pricing.demand`), and smoother price paths "
                "(exploration that moves one ladder step from the cell's last price, or the max-change "
                "guardrail applied per cell)."
            )
    out += [
        f"Learning cadence: the engine serves the list price until its first refit ({settings.first_refit:,} "
        "visitors) and learns only at refits (doubling schedule, no reweighting between refits), while VW "
        f"learns after every visitor and LinTS after every {settings.lints_batch}; its early regret is the "
        "static policy's.",
        (
            f"Context: visitors carry {settings.context_features} categorical context features with true logit "
            "effects (`Market.random(n_context_features=...)`); the engine declares them as its context schema "
            "(the x·d term) and the peers get them as features."
            if settings.context_features
            else "Context: visitors carry no context features in this run; `--context-features N` (1-3) gives "
            "them device, traffic source and returning-customer levels with true logit effects, which the "
            "engine declares as its context schema and the peers get as features."
        ),
        (
            "Favouring the engine: the simulated demand has exactly the engine's model form (logistic in log "
            "price ratio, additive segment and SKU intercepts, one lift per promotion), so its hierarchical "
            "model pools across segments and SKUs correctly; the peers assume nothing about demand. A "
            "misspecified market (`Market.random(segment_lift_sd=...)`) is not part of this run."
            if settings.market_family == "logistic"
            else f"Not favouring the engine: the simulated demand is {settings.market_family} "
            "(`experiments.simulator.Market`, `family`), not the engine's logistic form; its hierarchical "
            "model still pools across segments and SKUs, and the peers assume nothing about demand."
        ),
        "Promotion cold start: a promotion absent from the fitted cells draws its lift from the prior "
        "N(0, 0.5) (`DemandPosterior.promotion_lift`), so Thompson sampling tries it on purpose before "
        "the next refit includes its data.",
        "Peers are run with the settings stated above and not tuned further; LinTS alpha 0.25 is set near the "
        "reward noise (profit / list price of a Bernoulli purchase), MABWiser's default of 1 explores more.",
    ]
    return out


def _line(r: dict[str, Any]) -> str:
    return (
        f"seed {r['seed']}  {r['policy']:<15} profit {100 * r['profit'] / r['oracle_profit']:6.1f} % "
        f"of oracle (expected {100 * r['expected_profit'] / r['oracle_expected_profit']:5.1f} %)  "
        f"{r.get('seconds', 0.0):6.1f} s"
    )


def _progress(total: int, label: str, verbose: bool) -> Callable[[int, str], Any]:
    """A progress callback: (n, message) advances by n and shows message; n = -1 closes."""
    if not verbose:
        return lambda n, message: None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is an engine dependency
        count = [0]

        def plain(n: int, message: str) -> None:
            if message:
                print(f"{label}: {message}", flush=True)
            if n > 0:
                count[0] += n
                if count[0] % max(total // 10, 1) == 0:
                    print(f"{label}: {count[0]:,}/{total:,}", flush=True)

        return plain
    bar = tqdm(total=total, desc=label, mininterval=2.0, file=sys.stderr, leave=False)

    def update(n: int, message: str) -> None:
        if n < 0:
            bar.close()
            return
        if message:
            bar.write(f"{label}: {message}", file=sys.stderr)
        if n:
            bar.update(n)

    return update


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 segments x 3 SKUs, T = 300, one seed, engine + static + oracle, one small refit; "
        "prints only",
    )
    parser.add_argument("--no-peers", action="store_true", help="engine, static and oracle only")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    parser.add_argument(
        "--visitors", type=int, default=None, help="visitors per seed (default 20,000)"
    )
    parser.add_argument("--peer-python", help="python of an environment with the peers installed")
    parser.add_argument("--no-doc", action="store_true", help="print only, write no files")
    for name, default in (("segments", 5), ("skus", 10), ("categories", 2), ("promotions", 2),
                          ("first-refit", Settings.first_refit), ("context-features", 0)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument(
        "--engine-epsilon",
        type=float,
        default=Settings.engine_epsilon,
        help="the engine's exploration share (production default 0.02)",
    )
    parser.add_argument(
        "--engine-floor",
        type=float,
        default=0.01,
        help="the uniform part of it, each allowed action >= floor / n (production default 0.01; "
        ">= the exploration share: all uniform)",
    )
    parser.add_argument(
        "--market-family", choices=FAMILIES, default="logistic",
        help="demand family of the simulated markets (logistic: the engine's own model form)",
    )  # fmt: skip
    parser.add_argument("--peers-from", metavar="SECTION",
                        help="use the peers' results saved by the run of another section (same "
                        "markets and visitors) instead of playing them")  # fmt: skip
    parser.add_argument(
        "--section", default="promotions-joint",
        help="doc section and plot name (the decision-quality run uses its own)",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true",
        help="reuse the per-seed results saved in benchmarks/results/<section>/ by an earlier run "
        "with the same settings (a long run can be stopped and continued)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global BEGIN, END, PLOT
    BEGIN, END = f"<!-- {args.section}:begin -->", f"<!-- {args.section}:end -->"
    PLOT = PLOT.with_name(f"{args.section.replace('-', '_')}.png")
    if args.quick:
        settings = Settings(
            segments=2, skus=3, categories=1, promotions=2, visitors=args.visitors or 300,
            seeds=tuple(range(1, 1 + (args.seeds or 1))), first_refit=150, draws=100, tune=100,
            posterior_draws=200, n_points=10, peers=(), context_features=args.context_features,
            engine_epsilon=args.engine_epsilon, engine_floor=args.engine_floor,
        )  # fmt: skip
    else:
        settings = Settings(
            segments=args.segments, skus=args.skus, categories=args.categories,
            promotions=args.promotions, first_refit=args.first_refit,
            visitors=args.visitors or Settings.visitors,
            seeds=tuple(range(1, 1 + (args.seeds or 3))),
            peers=() if args.no_peers else PEER_POLICIES, context_features=args.context_features,
            engine_epsilon=args.engine_epsilon, engine_floor=args.engine_floor,
            market_family=args.market_family,
        )  # fmt: skip
    start = time.perf_counter()
    cache = None if args.quick or args.no_doc else RESULTS / args.section
    peers_from = RESULTS / args.peers_from if args.peers_from else None
    results, fits = run(settings, args.peer_python, verbose=True, cache=cache, resume=args.resume,
                        peers_from=peers_from)  # fmt: skip
    seconds = time.perf_counter() - start
    rows = aggregate(results)
    print(table(rows))
    print("\n".join(findings(results, fits)))
    print("\n".join(f"- {n}" for n in notes(results, settings)))
    print(f"total {seconds:.1f} s")
    if args.quick or args.no_doc:
        return 0
    plot(results, PLOT)
    command = "python -m benchmarks.promotions_joint" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]) if a != "--resume"
    )
    family = (
        "decision-quality" if args.section.startswith("decision-quality") else "promotions-joint"
    )
    title = TITLES.get(args.section, TITLES[family])
    if settings.engine_epsilon != Settings.engine_epsilon:
        title += f" (engine ε = {settings.engine_epsilon:g})"
    if settings.market_family != "logistic":
        title += f" — {settings.market_family} demand, not the engine's model form"
    write_doc(results, rows, fits, settings, command, seconds, notes(results, settings), title,
              resumed=args.resume)  # fmt: skip
    print(f"written to {DOC} and {PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
