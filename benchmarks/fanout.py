"""A large catalog's refit fanned out one fit per category vs one monolithic fit.

    python -m benchmarks.fanout                              # default size; writes docs/benchmarks.md
    python -m benchmarks.fanout --segments 20 --skus 20000 --categories 40   # the issue's size
    python -m benchmarks.fanout --quick --no-doc             # smoke run

Synthetic demand from :class:`experiments.synthetic.DemandTruth` (the model's own form):
each SKU sells in ``--segments-per-sku`` random segments at three price ratios. The "last
full fit" is a monolithic fit to a first period of data; a second period then arrives,
and the refit of both periods is done two ways, on the same cells:

- **monolithic**: :class:`pricing.demand.DemandModel` on every cell (PyMC NUTS, its chains
  on the machine's cores);
- **fanned out**: one :func:`pricing.fanout.category_model` fit per category with the
  shared parameters held at the last full fit's posterior means, run by ``--workers``
  worker processes (one chain process each, so both ways use the same cores), then
  :func:`pricing.fanout.gather` and :func:`pricing.fanout.gate`.

Reported: wall time of each, worst R-hat, smallest bulk ESS and divergences (over all
categories for the fan-out), and the agreement of the (segment, category) elasticities:
mean absolute difference of posterior means, their correlation, the share of the
monolithic fit's means inside the fan-out's 90 % intervals, interval widths, and each
way's coverage of the truth.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from benchmarks.report import replace_section

os.environ.setdefault("PYTENSOR_FLAGS", "compiledir=/tmp/ptc")

BEGIN, END = "<!-- fanout:begin -->", "<!-- fanout:end -->"
RATIOS = (0.85, 1.0, 1.15)


def make_cells(truth: Any, *, per_sku: int, trials: int, layout_seed: int, outcome_seed: int) -> Any:
    """Binomial cells of ``truth``: each SKU in ``per_sku`` random segments (chosen by
    ``layout_seed``, so two periods share their cells), three prices."""
    from pricing.cells import CellRecord, Cells

    layout = np.random.default_rng(layout_seed)
    outcomes = np.random.default_rng(outcome_seed)
    records = []
    n_seg = len(truth.segments)
    for j, sku in enumerate(truth.skus):
        category = truth.categories[int(truth.sku_category[j])]
        for s in layout.choice(n_seg, size=min(per_sku, n_seg), replace=False):
            for ratio in RATIOS:
                p = float(truth.probability(int(s), j, ratio))
                records.append(CellRecord(truth.segments[int(s)], sku, category, ratio, "",
                                          trials, int(outcomes.binomial(trials, p))))  # fmt: skip
    return Cells.from_records(records)


def merge(a: Any, b: Any) -> Any:
    """The cells of two periods together (same cells: trials and conversions add up)."""
    from pricing.cells import CellRecord, Cells

    def records(c: Any) -> list[Any]:
        return [CellRecord(str(c.segment[i]), str(c.sku[i]), str(c.category[i]),
                           float(np.exp(c.log_price_ratio[i])), str(c.promotion[i]),
                           int(c.trials[i]), int(c.conversions[i])) for i in range(len(c))]  # fmt: skip

    return Cells.from_records(records(a) + records(b))


def subset(cells: Any, category: str) -> Any:
    """One category's cells."""
    from pricing.cells import CellRecord, Cells

    idx = np.flatnonzero(cells.category == category)
    return Cells.from_records([
        CellRecord(str(cells.segment[i]), str(cells.sku[i]), category,
                   float(np.exp(cells.log_price_ratio[i])), str(cells.promotion[i]),
                   int(cells.trials[i]), int(cells.conversions[i])) for i in idx
    ])  # fmt: skip


def _fit_one(args: tuple[Any, Any, dict[str, Any], int]) -> Any:
    """In a worker process: one category's fit (the work of one queue job)."""
    from pricing.fanout import category_model

    cells, shared, sampler, n_draws = args
    model = category_model(shared, sampler_config=sampler)
    model.fit(cells)
    return model.category_draws(n_draws, cells)


def summary(posterior: Any, truth: Any) -> dict[tuple[str, str], tuple[float, float, float, bool]]:
    """Per pair: posterior mean, 5 % and 95 % quantiles of log elasticity; truth covered."""
    out = {}
    for i, (segment, category) in enumerate(posterior.pairs):
        x = posterior.log_e[:, i]
        lo, hi = np.quantile(x, [0.05, 0.95])
        true = truth.log_e[truth.segments.index(segment), truth.categories.index(category)]
        out[(segment, category)] = (float(x.mean()), float(lo), float(hi), bool(lo <= true <= hi))
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--categories", type=int, default=40)
    parser.add_argument("--segments-per-sku", type=int, default=3)
    parser.add_argument("--trials", type=int, default=60, help="trials per cell per period")
    parser.add_argument("--workers", type=int, default=2, help="fan-out worker processes")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few draws")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.segments, args.skus, args.categories, args.draws, args.tune = 4, 24, 3, 300, 300
    from experiments.synthetic import DemandTruth
    from pricing.demand import DemandModel
    from pricing.fanout import SharedParameters, gate, gather

    started_run = time.perf_counter()
    truth = DemandTruth.random(args.segments, args.skus, args.categories, seed=11)
    cells = {"per_sku": args.segments_per_sku, "trials": args.trials, "layout_seed": 1}
    first = make_cells(truth, **cells, outcome_seed=2)
    second = make_cells(truth, **cells, outcome_seed=3)  # the same cells, a new period
    both = merge(first, second)
    sampler = {"method": "nuts", "draws": args.draws, "tune": args.tune, "chains": 2, "random_seed": 3}
    print(f"fan-out benchmark: {args.segments} segments x {args.skus:,} SKUs in {args.categories} "
          f"categories; {len(both):,} cells, {both.n_trials:,} trials", flush=True)  # fmt: skip

    print("  last full fit (first period) ...", flush=True)
    t0 = time.perf_counter()
    base_model = DemandModel(sampler_config=sampler).fit(first)
    base_seconds = time.perf_counter() - t0
    base = base_model.posterior(500)
    print(f"    {base_seconds:.0f} s, {base_model.diagnostics_}", flush=True)

    print("  monolithic refit (both periods) ...", flush=True)
    t0 = time.perf_counter()
    mono_model = DemandModel(sampler_config=sampler).fit(both)
    mono_seconds = time.perf_counter() - t0
    mono = mono_model.posterior(500)
    md = mono_model.diagnostics_
    print(f"    {mono_seconds:.0f} s, R-hat {md.max_rhat:.3f}, ESS {md.min_ess_bulk:.0f}, "
          f"divergences {md.divergences}", flush=True)  # fmt: skip

    print(f"  fanned-out refit over {args.workers} workers ...", flush=True)
    shared = SharedParameters.from_posterior(base)
    one_core = {**sampler, "cores": 1}
    jobs = [(subset(both, c), shared, one_core, base.n_draws) for c in truth.categories]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        parts = list(pool.map(_fit_one, jobs))
    fan_seconds = time.perf_counter() - t0
    verdict = gate(parts)
    fan = gather(base, parts)
    print(f"    {fan_seconds:.0f} s, R-hat {verdict['max_rhat']:.3f}, ESS {verdict['min_ess_bulk']:.0f}, "
          f"divergences {verdict['divergences']}, gate {'pass' if verdict['passed'] else 'FAIL'}", flush=True)  # fmt: skip

    a, b = summary(mono, truth), summary(fan, truth)
    common = sorted(set(a) & set(b))
    mean_a = np.array([a[k][0] for k in common])
    mean_b = np.array([b[k][0] for k in common])
    inside = np.mean([b[k][1] <= a[k][0] <= b[k][2] for k in common])
    width_a = np.mean([a[k][2] - a[k][1] for k in common])
    width_b = np.mean([b[k][2] - b[k][1] for k in common])
    result = {
        "args": vars(args), "cells": len(both), "trials": both.n_trials, "base_seconds": base_seconds,
        "mono_seconds": mono_seconds, "fan_seconds": fan_seconds,
        "mono": {"rhat": md.max_rhat, "ess": md.min_ess_bulk, "divergences": md.divergences,
                 "passed": md.passed},
        "fan": {k: verdict[k] for k in ("max_rhat", "min_ess_bulk", "divergences", "passed")},
        "pairs": len(common), "mad": float(np.mean(np.abs(mean_a - mean_b))),
        "corr": float(np.corrcoef(mean_a, mean_b)[0, 1]) if len(common) > 2 else float("nan"),
        "inside": float(inside), "width_mono": float(width_a), "width_fan": float(width_b),
        "cover_mono": float(np.mean([a[k][3] for k in common])),
        "cover_fan": float(np.mean([b[k][3] for k in common])),
        "run_seconds": time.perf_counter() - started_run,
    }  # fmt: skip
    section = report(result)
    print(section)
    if not args.no_doc and not args.quick:
        replace_section(BEGIN, END, section)
        print("wrote the fan-out section of docs/benchmarks.md")
    return 0


def report(r: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    a = r["args"]
    mono, fan = r["mono"], r["fan"]
    command = (f"python -m benchmarks.fanout --segments {a['segments']} --skus {a['skus']} "
               f"--categories {a['categories']} --segments-per-sku {a['segments_per_sku']} "
               f"--trials {a['trials']} --workers {a['workers']} --draws {a['draws']} --tune {a['tune']}")  # fmt: skip
    return "\n".join([
        BEGIN,
        "## Refits that outgrow one machine: one fit per category vs one monolithic fit",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores; "
        f"run time {r['run_seconds'] / 60:.1f} min",
        f"- command: `{command}`",
        f"- data: `DemandTruth` with {a['segments']} segments and {a['skus']:,} SKUs in "
        f"{a['categories']} categories, each SKU in {a['segments_per_sku']} random segments at three "
        f"prices, {a['trials']} trials per cell per period; {r['cells']:,} cells, {r['trials']:,} trials "
        "over two periods. The base (the last full fit) is a monolithic fit to the first period; both "
        "refits below fit both periods.",
        f"- sampler: PyMC NUTS, 2 chains x {a['draws']} draws after {a['tune']} tuning steps; the "
        f"monolithic fit runs its chains on the machine's cores, the fan-out runs {a['workers']} worker "
        "processes with one chain process each (the same cores).",
        "",
        "| refit | wall time s | max R-hat | min bulk ESS | divergences | gate |",
        "|---|---:|---:|---:|---:|---|",
        f"| monolithic | {r['mono_seconds']:,.0f} | {mono['rhat']:.3f} | {mono['ess']:,.0f} | "
        f"{mono['divergences']} | {'pass' if mono['passed'] else 'FAIL'} |",
        f"| fanned out ({a['categories']} category fits, {a['workers']} workers) | {r['fan_seconds']:,.0f} | "
        f"{fan['max_rhat']:.3f} | {fan['min_ess_bulk']:,.0f} | {fan['divergences']} | "
        f"{'pass' if fan['passed'] else 'FAIL'} |",
        "",
        f"Agreement of the {r['pairs']:,} (segment, category) log elasticities: mean absolute difference "
        f"of posterior means {r['mad']:.3f} (correlation {r['corr']:.3f}); {r['inside']:.0%} of the "
        f"monolithic means lie inside the fan-out's 90 % intervals; mean 90 % interval width "
        f"{r['width_mono']:.3f} monolithic vs {r['width_fan']:.3f} fanned out; coverage of the truth "
        f"{r['cover_mono']:.0%} monolithic vs {r['cover_fan']:.0%} fanned out (nominal 90 %). "
        f"Wall time fanned out / monolithic: {r['fan_seconds'] / r['mono_seconds']:.2f}.",
        END,
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
