"""Online updates between refits: one weight per draw vs one per (segment, category) block.

    python -m benchmarks.reweighting               # writes docs/benchmarks.md
    python -m benchmarks.reweighting --quick       # tiny market and chains, prints only

A simulated market (:class:`experiments.simulator.Market`, the engine's model form) is
observed under uniformly random (price, promotion) actions; the demand model is fitted
with NUTS to a first batch of visitors. Then new visitors arrive, +10 %, +50 % and +100 %
of the first batch, and the fitted draws are updated three ways:

- none: the posterior as fitted (what a worker would serve without online updates);
- global: importance weights, one per draw, by the likelihood of every new outcome
  (:meth:`~pricing.posterior.DemandPosterior.reweight`, the engine's update until now);
- blocks: one weight per draw and (segment, category) block, each by its own outcomes
  (:meth:`~pricing.posterior.DemandPosterior.reweight_blocks`, ``PRICING_REWEIGHT_BLOCKS``).

Each is compared with a fresh NUTS fit to all the data: the effective sample size left
(for blocks the smallest and the median over blocks), the mean absolute difference of the
price coefficients' posterior means per (segment, category), and the coverage: the share
of (segment, category) pairs whose refitted mean lies inside the updated posterior's 90 %
interval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from typing import Any

import numpy as np

from benchmarks.report import replace_section
from experiments.simulator import Market
from pricing.cells import CellRecord, Cells
from pricing.demand import DemandModel
from pricing.posterior import DemandPosterior, outcome_log_likelihood

BEGIN, END = "<!-- reweighting:begin -->", "<!-- reweighting:end -->"
FRACTIONS = (0.1, 0.5, 1.0)

Counts = dict[tuple[int, int, int], list[int]]


def observe(market: Market, visitors: int, seed: int) -> Counts:
    """Trials and conversions per (segment, SKU, action) under uniformly random actions."""
    segment, sku = market.visitors(visitors, seed)
    rng = np.random.default_rng(seed + 7919)
    action = rng.integers(market.n_actions, size=visitors)
    converted, _ = market.play(segment, sku, action, market.purchase_draws(visitors, seed))
    counts: Counts = {}
    for s, j, a, y in zip(segment.tolist(), sku.tolist(), action.tolist(), converted.tolist(), strict=True):
        cell = counts.setdefault((s, j, a), [0, 0])
        cell[0] += 1
        cell[1] += int(y)
    return counts


def merge(*parts: Counts) -> Counts:
    """Cell-wise sum of several observation counts."""
    out: Counts = {}
    for part in parts:
        for key, (n, y) in part.items():
            cell = out.setdefault(key, [0, 0])
            cell[0] += n
            cell[1] += y
    return out


def _cell(market: Market, s: int, j: int, a: int) -> tuple[str, str, str, float, str]:
    ratio = float(market.effective_prices[j, a] / market.list_price_minor[j])
    k = int(market.action_promotion[a])
    promotion = market.promotions[k].key if k >= 0 else ""
    return (market.segments[s], market.skus[j], market.categories[int(market.sku_category[j])],
            ratio, promotion)  # fmt: skip


def fit(market: Market, counts: Counts, seed: int, draws: int, tune: int) -> DemandPosterior:
    """NUTS fit of the demand model to ``counts``; ``draws`` thinned posterior draws."""
    records = [CellRecord(*_cell(market, s, j, a), n, y) for (s, j, a), (n, y) in counts.items()]
    model = DemandModel(sampler_config={
        "method": "nuts", "draws": draws, "tune": tune, "chains": 2, "random_seed": seed,
        "retry_target_accept": None, "max_draws": 0,
    }).fit(Cells.from_records(records))  # fmt: skip
    return model.posterior(draws, meta={"version": f"bench-{seed}"})


def log_likelihood(
    posterior: DemandPosterior, market: Market, counts: Counts
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Log-likelihood of ``counts`` per draw: outside fitted blocks, and per block."""
    rows = [(*_cell(market, s, j, a), None, n, y) for (s, j, a), (n, y) in counts.items()]
    return outcome_log_likelihood(posterior, rows, blocks=True)


def compare(updated: DemandPosterior, refit: DemandPosterior) -> dict[str, float]:
    """Agreement of an updated posterior with a fresh fit, over (segment, category) pairs."""
    errors, covered = [], []
    for segment, category in refit.pairs:
        mine = updated.elasticity_summary(segment, category)
        target = refit.elasticity_summary(segment, category)["mean"]
        errors.append(abs(mine["mean"] - target))
        covered.append(mine["lower"] <= target <= mine["upper"])
    return {"error": float(np.mean(errors)), "coverage": float(np.mean(covered))}


def run(quick: bool) -> list[dict[str, Any]]:
    """Every fraction × update; rows for the table."""
    if quick:
        market = Market.random(2, 3, 1, 1, seed=3)
        first, draws, tune = 1500, 100, 100
    else:
        market = Market.random(5, 10, 2, 2, seed=3)
        first, draws, tune = 20_000, 500, 500
    base = observe(market, first, seed=1)
    started = time.perf_counter()
    fitted = fit(market, base, seed=1, draws=draws, tune=tune)
    print(f"first fit: {len(base)} cells, {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for f in FRACTIONS:
        new = observe(market, int(f * first), seed=100 + int(100 * f))
        started = time.perf_counter()
        refit = fit(market, merge(base, new), seed=2, draws=draws, tune=tune)
        print(f"+{f:.0%}: fresh fit {time.perf_counter() - started:.0f} s", flush=True)
        shared, blocks = log_likelihood(fitted, market, new)
        total = shared + sum(blocks.values(), np.zeros(fitted.n_draws))
        updates = {
            "none": fitted,
            "global": fitted.reweight(total),
            "blocks": fitted.reweight_blocks(shared, blocks),
        }
        for name, updated in updates.items():
            block_ess = updated.block_ess()
            rows.append({
                "new": f, "update": name, "draws": fitted.n_draws,
                "ess_min": float(block_ess.min()), "ess_median": float(np.median(block_ess)),
                **compare(updated, refit),
            })  # fmt: skip
            r = rows[-1]
            print(f"  {name:6s} ESS min {r['ess_min']:6.1f} median {r['ess_median']:6.1f}  "
                  f"|mean b - refit| {r['error']:.3f}  coverage {r['coverage']:.0%}", flush=True)  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows."""
    out = [
        "| new data | update | ESS, smallest block (of draws) | ESS, median block | mean abs. difference of b vs a fresh fit | fresh fit's mean inside the 90 % interval |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(f"| +{r['new']:.0%} | {r['update']} | {r['ess_min']:.0f} of {r['draws']} | "
                   f"{r['ess_median']:.0f} | {r['error']:.3f} | {r['coverage']:.0%} |")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny market and chains, prints only")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run(args.quick)
    lines = table(rows)
    print("\n".join(lines))
    if args.quick or args.no_doc:
        return 0
    minutes = (time.perf_counter() - started) / 60
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        BEGIN,
        "## Online updates between refits: one weight per draw vs per (segment, category) block",
        "",
        f"- date: {stamp}; run time {minutes:.1f} min; {platform.machine()}, Python {platform.python_version()}",
        "- command: `python -m benchmarks.reweighting`",
        "- setting: `Market.random(5, 10, 2, 2, seed=3)` (5 segments x 10 SKUs in 2 categories, 2 promotions, "
        "the engine's model form), uniformly random (price, promotion) actions; a first NUTS fit (2 chains x 500 "
        "draws) to 20,000 visitors, then +10 %, +50 % and +100 % new visitors folded in by each update and "
        "compared with a fresh NUTS fit to all the data",
        "- columns: ESS of the weights a decision uses (for `none` and `global` every block has the same); the "
        "price coefficient b = -exp(log_e) per (segment, category): mean absolute difference between the "
        "updated and the refitted posterior means, and the share of pairs whose refitted mean lies in the "
        "updated 90 % interval",
        "",
        *lines,
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)
    print("wrote the reweighting section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
