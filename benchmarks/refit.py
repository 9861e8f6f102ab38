"""Refit time of the demand model vs number of cells, NUTS vs nutpie vs ADVI.

    python -m benchmarks.refit              # 100, 1,000 and 5,000 cells; writes docs/benchmarks.md
    python -m benchmarks.refit --quick      # tiny smoke run, prints only

Each size is fitted on synthetic data with known truth (experiments.synthetic). Every
method is warmed up once first, so times include sampling and model compilation with a
warm PyTensor cache, as in a running updater. Ratios are against PyMC NUTS measured in
the same run on the same data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from typing import Any

import numpy as np

from benchmarks.report import DOC, replace_section
from experiments.synthetic import DemandTruth
from pricing.demand import DemandModel, nutpie_available

SIZES = {
    100: (4, 5, 2),
    1000: (10, 20, 4),
    5000: (20, 50, 4),
}  # cells: (segments, skus, categories)
RATIOS = (0.8, 0.9, 1.0, 1.1, 1.2)
BEGIN, END = "<!-- refit:begin -->", "<!-- refit:end -->"


def run(
    sizes: dict[int, tuple[int, int, int]], methods: list[str], trials: int, seed: int,
    sampler: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Fit every size with every method (default sampler settings, or ``sampler`` over
    them); return one row per fit."""
    warm = DemandTruth.random(2, 3, 1, seed=0).sample_cells(
        trials_per_cell=50, price_ratios=RATIOS, seed=0
    )
    for method in methods:
        DemandModel(sampler_config={"method": method, "draws": 50, "tune": 50, "advi_iterations": 500,
                                    "retry_target_accept": None, "max_draws": 0}).fit(warm)  # fmt: skip
    rows = []
    for n_cells, (s, j, c) in sizes.items():
        truth = DemandTruth.random(s, j, c, seed=seed)
        cells = truth.sample_cells(trials_per_cell=trials, price_ratios=RATIOS, seed=seed + 1)
        assert len(cells) == n_cells, (len(cells), n_cells)
        for method in methods:
            model = DemandModel(sampler_config={"method": method, **(sampler or {})}).fit(cells)
            d = model.diagnostics_
            post = model.posterior(500)
            errors = [post.elasticity_summary(seg, cat)["mean"] - truth.b(i, k)
                      for i, seg in enumerate(truth.segments) for k, cat in enumerate(truth.categories)
                      if (seg, cat) in post.pairs]  # fmt: skip
            rows.append({
                "cells": n_cells, "method": method, "seconds": d.seconds, "max_rhat": d.max_rhat,
                "min_ess": d.min_ess_bulk, "divergences": d.divergences, "passed": d.passed,
                "retried": d.retried, "approximate": d.approximate,
                "ess_per_s": d.min_ess_bulk / d.seconds, "rmse_b": float(np.sqrt(np.mean(np.square(errors)))),
            })  # fmt: skip
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    rhat = "n/a" if np.isnan(r["max_rhat"]) else f"{r['max_rhat']:.3f}"
    return (f"{r['cells']:>6} cells  {r['method']:<7} {r['seconds']:7.1f} s  R-hat {rhat:>6}  "
            f"ESS {r['min_ess']:6.0f}  div {r['divergences']:3d}  passed {r['passed']!s:<5}  "
            f"ESS/s {r['ess_per_s']:6.1f}  RMSE(b) {r['rmse_b']:.3f}")  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table with time ratios against NUTS at the same size."""
    nuts = {r["cells"]: r["seconds"] for r in rows if r["method"] == "nuts"}
    out = ["| cells | method | seconds | × NUTS time | max R-hat | min bulk ESS | divergences | gate | retried | ESS/s | RMSE of b |",
           "|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|"]  # fmt: skip
    for r in rows:
        rhat = "n/a (approx.)" if np.isnan(r["max_rhat"]) else f"{r['max_rhat']:.3f}"
        ratio = f"{r['seconds'] / nuts[r['cells']]:.2f}" if r["cells"] in nuts else "-"
        out.append(f"| {r['cells']:,} | {r['method']} | {r['seconds']:.1f} | {ratio} | {rhat} | {r['min_ess']:.0f} | "
                   f"{r['divergences']} | {'pass' if r['passed'] else 'FAIL'} | {'yes' if r['retried'] else 'no'} | "
                   f"{r['ess_per_s']:.1f} | {r['rmse_b']:.3f} |")  # fmt: skip
    return "\n".join(out)


def _findings(rows: list[dict[str, Any]]) -> list[str]:
    out = ["Findings:", ""]
    nuts = {r["cells"]: r for r in rows if r["method"] == "nuts"}
    if 1000 in nuts:
        r = nuts[1000]
        verdict = "meets" if r["passed"] and r["seconds"] <= 30 else "misses"
        out.append(f"- 1,000 cells with NUTS: {r['seconds']:.1f} s, gate {'passed' if r['passed'] else 'failed'}: "
                   f"{verdict} the target of <= 30 s with diagnostics passing.")  # fmt: skip
    for method in ("nutpie", "advi"):
        ratios = [f"{r['seconds'] / nuts[r['cells']]['seconds']:.2f}x at {r['cells']:,}"
                  for r in rows if r["method"] == method and r["cells"] in nuts]  # fmt: skip
        if ratios:
            out.append(f"- {method} time vs NUTS: {', '.join(ratios)} cells.")
    out.append(
        "- nutpie needs `pip install nutpie` in the benchmark's environment; `auto` uses PyMC NUTS."
    )
    out.append("")
    return out


def write_doc(rows: list[dict[str, Any]], command: str) -> None:
    """Replace the refit section of docs/benchmarks.md."""
    section = "\n".join([
        BEGIN,
        "## Demand model refit time vs cells",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        f"- command: `{command}`",
        "- data: synthetic cells from `experiments.synthetic.DemandTruth` (5 price levels, 200 trials per cell); "
        "default sampler settings (2 chains x 1,000 draws after 1,000 tuning steps, target accept 0.98, automatic retry); "
        "time includes graph compilation with a warm cache.",
        "- gate: max R-hat <= 1.01, min bulk ESS >= 400, zero divergences. RMSE of b: error of the posterior-mean "
        "price coefficient against the truth.",
        "",
        table(rows),
        "",
        *_findings(rows),
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no document written")
    parser.add_argument(
        "--methods", default=None, help="comma-separated subset of nuts,nutpie,advi"
    )
    parser.add_argument("--sizes", default=None, help="comma-separated subset of 100,1000,5000")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    methods = (
        args.methods.split(",")
        if args.methods
        else ["nuts", *(["nutpie"] if nutpie_available() else []), "advi"]
    )
    if args.quick:
        # A smoke run of the code path: short chains, no retry (the gate may fail).
        short = {"draws": 200, "tune": 200, "advi_iterations": 2000, "retry_target_accept": None,
                 "max_draws": 0}
        rows = run({20: (2, 2, 1)}, methods, trials=100, seed=args.seed, sampler=short)
        return 0 if rows else 1
    sizes = {k: v for k, v in SIZES.items() if not args.sizes or str(k) in args.sizes.split(",")}
    rows = run(sizes, methods, trials=200, seed=args.seed)
    write_doc(rows, "python -m benchmarks.refit" + "".join(f" {a}" for a in (argv or sys.argv[1:])))
    print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
