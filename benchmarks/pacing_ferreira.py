"""LP-based Thompson sampling with limited inventory: the single-product study of Ferreira et al.

    python -m benchmarks.pacing_ferreira            # full run; writes docs/benchmarks.md and a plot
    python -m benchmarks.pacing_ferreira --quick    # T = 100, a few replications, prints only

Setting
-------
Ferreira, Simchi-Levi & Wang (2018), "Online Network Revenue Management Using Thompson
Sampling", Operations Research 66(6), study one product sold over T periods at one of four
prices {29.9, 34.9, 39.9, 44.9}. One customer arrives per period and buys with probability
{0.8, 0.6, 0.3, 0.1} at those prices (Bernoulli demand, unknown to the seller). The seller
holds I = α·T units, α ∈ {0.25, 0.5}, and can no longer sell once they are gone.

Algorithms (both use independent Beta(1, 1) priors on each purchase probability):

TS-update
    In period t draw θ_k ~ Beta(1 + sales_k, 1 + offers_k − sales_k) for every price and solve

        maximise Σ_k p_k θ_k x_k   s.t.   Σ_k θ_k x_k ≤ c_t,   Σ_k x_k ≤ 1,   x ≥ 0

    with c_t = (inventory left) / (periods left, this one included); offer price k with
    probability x_k and the "shut-off" price (no sale possible) with the remainder.
TS-fixed
    The same with the fixed rate c = α = I / T.

The LP is solved with the engine's own :func:`pricing.pacing.lp_mixture`. Its candidates
must sum to one, so the shut-off price is an explicit extra column with reward 0 and
spend 0. ``lp_mixture`` takes one rate for all draws, whereas TS-update has a different
rate in every replication; since Σ θ_k x_k ≤ c is the same constraint as
Σ (θ_k / c) x_k ≤ 1, each replication's spend row is divided by its own rate and the rate
passed is 1. That keeps every replication of a period in a single vectorised call (one
"draw" row per replication).

Reference
---------
The benchmark is the deterministic LP bound T · LP(θ, α) with the true purchase
probabilities and c = α, an upper bound on the expected revenue of any policy, even one
that knows θ. Results are the mean over replications of revenue / bound, with a standard
error. The paper's figures quoted for comparison (TS-update near 98.5 % of the bound at
T = 500 and near 99.9 % at T = 10,000) are approximate values read off the paper's plot.

Every configuration draws from its own ``numpy.random.Generator`` seeded with
``(seed, α index, T, algorithm index)``, so results are deterministic and do not depend on
which other configurations run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from benchmarks.report import DOC, replace_section
from pricing.pacing import lp_mixture

FloatArray = NDArray[np.float64]

PRICES = np.array([29.9, 34.9, 39.9, 44.9])
THETA = np.array([0.8, 0.6, 0.3, 0.1])
ALPHAS = (0.25, 0.5)
ALGORITHMS = ("TS-update", "TS-fixed")
TABLE_HORIZONS = (500, 10_000)
PLOT_HORIZONS = (100, 200, 500, 1_000, 2_000, 5_000, 10_000)
# Approximate % of the LP bound for TS-update, read from the paper's figure.
PAPER_TS_UPDATE = {500: 98.5, 10_000: 99.9}
BEGIN, END = "<!-- pacing-ferreira:begin -->", "<!-- pacing-ferreira:end -->"
PLOT = DOC.parent / "img" / "pacing_ferreira.png"


@dataclass(frozen=True)
class Result:
    """Revenue as a share of the LP bound for one (α, T, algorithm) configuration."""

    alpha: float
    horizon: int
    algorithm: str
    reps: int
    mean_pct: float
    se_pct: float
    seconds: float

    @property
    def paper_pct(self) -> float | None:
        """The paper's approximate figure for this configuration, if it reports one."""
        return PAPER_TS_UPDATE.get(self.horizon) if self.algorithm == "TS-update" else None


def _with_shut_off(values: FloatArray) -> FloatArray:
    """Append the shut-off price's zero column to an (R, K) array."""
    out: FloatArray = np.concatenate([values, np.zeros((values.shape[0], 1))], axis=1)
    return out


def lp_value(theta: FloatArray, rate: float) -> float:
    """Optimal value per period of the pricing LP for purchase probabilities ``theta``."""
    reward = _with_shut_off((PRICES * theta)[None, :])
    x = lp_mixture(reward, _with_shut_off(theta[None, :]), rate)
    return float(x[0] @ reward[0])


def simulate(
    alpha: float, horizon: int, reps: int, update: bool, rng: np.random.Generator
) -> FloatArray:
    """Revenue of ``reps`` independent selling seasons, one entry per replication.

    Parameters
    ----------
    alpha : float
        Inventory per period: the season starts with ``round(alpha * horizon)`` units.
    horizon : int
        Number of periods T (one customer each).
    reps : int
        Replications, simulated side by side.
    update : bool
        True for TS-update (rate re-divided every period), False for TS-fixed (rate α).
    rng : numpy.random.Generator
        Source of the posterior draws, the price choices and the purchases.

    Returns
    -------
    ndarray, shape (reps,)
    """
    n_prices = len(PRICES)
    rows = np.arange(reps)
    inventory = np.full(reps, round(alpha * horizon), dtype=np.int64)
    offers = np.zeros((reps, n_prices))
    sales = np.zeros((reps, n_prices))
    revenue = np.zeros(reps)
    for t in range(horizon):
        selling = inventory > 0
        if not selling.any():
            break
        theta = rng.beta(1.0 + sales, 1.0 + offers - sales)
        reward = _with_shut_off(PRICES * theta)
        if update:
            rate = np.where(selling, inventory / (horizon - t), 1.0)
            x = lp_mixture(reward, _with_shut_off(theta / rate[:, None]), 1.0)
        else:
            x = lp_mixture(reward, _with_shut_off(theta), alpha)
        cdf = np.cumsum(x, axis=1)
        u = rng.random(reps) * cdf[:, -1]
        choice = np.minimum((u[:, None] >= cdf).sum(axis=1), n_prices)  # n_prices = shut-off
        offered = selling & (choice < n_prices)
        price = np.minimum(choice, n_prices - 1)
        bought = offered & (rng.random(reps) < THETA[price])
        offers[rows[offered], price[offered]] += 1.0
        sales[rows[bought], price[bought]] += 1.0
        inventory -= bought
        revenue += np.where(bought, PRICES[price], 0.0)
    return revenue


def run(
    horizons: tuple[int, ...], reps_for: dict[int, int], seed: int, verbose: bool = True
) -> list[Result]:
    """Simulate every (α, T, algorithm); ``reps_for`` maps each horizon to its replications."""
    results = []
    for a_index, alpha in enumerate(ALPHAS):
        bound_per_period = lp_value(THETA, alpha)
        for horizon in horizons:
            for g_index, algorithm in enumerate(ALGORITHMS):
                reps = reps_for[horizon]
                rng = np.random.default_rng([seed, a_index, horizon, g_index])
                start = time.perf_counter()
                revenue = simulate(alpha, horizon, reps, algorithm == "TS-update", rng)
                seconds = time.perf_counter() - start
                share = 100.0 * revenue / (horizon * bound_per_period)
                se = float(share.std(ddof=1) / np.sqrt(reps)) if reps > 1 else float("nan")
                results.append(
                    Result(alpha, horizon, algorithm, reps, float(share.mean()), se, seconds)
                )
                if verbose:
                    print(_line(results[-1]), flush=True)
    return results


def _line(r: Result) -> str:
    paper = f"  paper ≈ {r.paper_pct:.1f} %" if r.paper_pct is not None else ""
    return (
        f"alpha {r.alpha:<4}  T {r.horizon:>6}  {r.algorithm:<9}  "
        f"{r.mean_pct:6.2f} % ± {r.se_pct:.2f}  ({r.reps} reps, {r.seconds:.1f} s){paper}"
    )


def table(results: list[Result]) -> str:
    """Markdown table, one row per configuration."""
    out = [
        "| α | T | algorithm | % of LP bound (± s.e.) | reps | paper (approx.) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        paper = f"≈ {r.paper_pct:.1f}" if r.paper_pct is not None else "-"
        out.append(
            f"| {r.alpha} | {r.horizon:,} | {r.algorithm} | {r.mean_pct:.2f} ± {r.se_pct:.2f} "
            f"| {r.reps} | {paper} |"
        )
    return "\n".join(out)


def _findings(results: list[Result]) -> list[str]:
    out = ["Findings:", ""]
    for r in results:
        if r.paper_pct is None or r.horizon not in TABLE_HORIZONS:
            continue
        gap = r.mean_pct - r.paper_pct
        out.append(
            f"- α = {r.alpha}, T = {r.horizon:,}: TS-update {r.mean_pct:.2f} % ± {r.se_pct:.2f} "
            f"vs the paper's ≈ {r.paper_pct:.1f} % ({gap:+.2f} points)."
        )
    for alpha in ALPHAS:
        by = {(r.horizon, r.algorithm): r.mean_pct for r in results if r.alpha == alpha}
        diffs = [
            f"{by[h, 'TS-update'] - by[h, 'TS-fixed']:+.2f} at T = {h:,}"
            for h in sorted({h for h, _ in by})
            if (h, "TS-update") in by and (h, "TS-fixed") in by
        ]
        out.append(f"- α = {alpha}: TS-update minus TS-fixed (points): {', '.join(diffs)}.")
    out.append("")
    return out


def plot(results: list[Result], path: Path = PLOT) -> None:
    """Percentage of the LP bound against T, one line per (α, algorithm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for alpha in ALPHAS:
        for algorithm, style in zip(ALGORITHMS, ("-o", "--s"), strict=True):
            rows = sorted(
                (r for r in results if r.alpha == alpha and r.algorithm == algorithm),
                key=lambda r: r.horizon,
            )
            ax.errorbar(
                [r.horizon for r in rows],
                [r.mean_pct for r in rows],
                yerr=[1.96 * r.se_pct for r in rows],
                fmt=style,
                capsize=3,
                label=f"{algorithm}, α = {alpha}",
            )
    ax.plot(
        list(PAPER_TS_UPDATE),
        list(PAPER_TS_UPDATE.values()),
        "k*",
        markersize=11,
        label="paper, TS-update (approx.)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("selling horizon T (periods)")
    ax.set_ylabel("revenue, % of LP upper bound")
    ax.set_title("LP Thompson sampling, one product, 4 prices (error bars: 95 %)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_doc(results: list[Result], command: str, seconds: float, plotted: bool) -> None:
    """Replace the pacing-ferreira section of docs/benchmarks.md."""
    bounds = ", ".join(f"{lp_value(THETA, a):.3f} at α = {a}" for a in ALPHAS)
    reps = sorted({(r.horizon, r.reps) for r in results})
    section = "\n".join([
        BEGIN,
        "## LP Thompson sampling with limited inventory (Ferreira, Simchi-Levi & Wang, 2018)",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; run time {seconds:.0f} s",
        f"- command: `{command}`",
        "- setting: the paper's single-product study. Prices 29.9, 34.9, 39.9, 44.9; true purchase "
        "probabilities 0.8, 0.6, 0.3, 0.1; one Bernoulli customer per period; inventory α·T. "
        "Beta(1, 1) priors; one posterior draw per period; the LP (one inventory constraint plus an "
        "explicit zero-demand shut-off price) is solved by `pricing.pacing.lp_mixture`.",
        "- TS-update re-divides the inventory left by the periods left every period; TS-fixed "
        "keeps the rate at α.",
        f"- bound: T × LP value with the true probabilities and rate α (per period: {bounds}). "
        "% of bound: mean over replications of revenue / bound, ± one standard error.",
        "- replications: " + ", ".join(f"{n} at T = {h:,}" for h, n in reps) + ".",
        "- paper column: approximate figures for TS-update read from the paper's plot, not "
        "exact published numbers.",
        "",
        table(results),
        "",
        *_findings(results),
        *(["![% of LP bound vs T](img/pacing_ferreira.png)", ""] if plotted else []),
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="T = 100, 20 reps, no files written")
    parser.add_argument("--reps-500", type=int, default=1000, help="replications for T <= 2,000")
    parser.add_argument("--reps-10k", type=int, default=400, help="replications for T > 2,000")
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--no-doc", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    if args.quick:
        results = run((100,), {100: 20}, args.seed)
        print(table(results))
        return 0
    start = time.perf_counter()
    reps_for = {h: args.reps_500 if h <= 2_000 else args.reps_10k for h in PLOT_HORIZONS}
    print(f"replications: {args.reps_500} for T <= 2,000, {args.reps_10k} for T > 2,000")
    results = run(PLOT_HORIZONS, reps_for, args.seed)
    seconds = time.perf_counter() - start
    print(table(results))
    print(f"total {seconds:.1f} s")
    if args.no_doc:
        return 0
    plot(results)
    command = "python -m benchmarks.pacing_ferreira" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    write_doc(results, command, seconds, plotted=True)
    print(f"written to {DOC} and {PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
