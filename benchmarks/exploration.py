"""What exploration costs and buys: profit vs the smallest propensity and the OPE interval.

    python -m benchmarks.exploration               # writes docs/benchmarks.md and a plot
    python -m benchmarks.exploration --quick       # tiny market, one seed, prints only

The engine (:class:`pricing.policy.ThompsonPricePolicy`, as in
:mod:`benchmarks.promotions_joint`: same markets, visitors, refits) plays the same
visitors under several exploration settings: a share ε of decisions explores, its part c
uniformly over a line's n allowed (price, promotion) pairs — every one keeps a propensity
of at least c / n — and the rest, ε − c, on the ladder neighbours of the Thompson choice
(pricing/thompson.py). For each setting it reports:

- profit: expected profit of the actions served, % of the oracle's, over the whole run
  and over its last quarter;
- support: the guaranteed smallest propensity c / n, and the smallest one logged;
- evaluation: how well the log evaluates a fixed policy that is *not* the engine's
  (every visitor gets the price nearest 90 % of list, no promotion): inverse propensity
  (IPS) and self-normalised (SNIPS) estimates of its profit per visitor from the log
  after the first refit (before it the engine serves list prices with propensity 1), the
  width of IPS's 90 % interval (normal approximation), and the true value from the
  simulator's demand.

A smaller floor earns more but leaves rarely played actions with tiny propensities, and
the interval of any policy that plays them widens: the table shows the trade-off.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmarks.promotions_joint import Settings, Stream, run_engine, score
from benchmarks.report import DOC, replace_section

BEGIN, END = "<!-- exploration:begin -->", "<!-- exploration:end -->"
PLOT = DOC.parent / "img" / "exploration.png"
#: (label, ε, uniform part c).
CONFIGS: tuple[tuple[str, float, float], ...] = (
    ("ε 0.05 uniform (before)", 0.05, 0.05),
    ("ε 0.05, floor 0.01 (default)", 0.05, 0.01),
    ("ε 0.05, floor 0.002", 0.05, 0.002),
    ("ε 0.02, floor 0.01", 0.02, 0.01),
    ("ε 0.01 uniform", 0.01, 0.01),
)
Z90 = 1.6448536269514722


@dataclass
class Row:
    """One (setting, seed) run's figures."""

    label: str
    epsilon: float
    floor: float
    seed: int
    share: float
    late_share: float
    guaranteed: float
    smallest: float
    ips: float
    snips: float
    width: float
    truth: float


def evaluate(label: str, epsilon: float, floor: float, seed: int, settings: Settings) -> Row:
    """Play one seed's visitors with one exploration setting and score it."""
    market = settings.market(seed)
    segment, sku = market.visitors(settings.visitors, seed)
    u = market.purchase_draws(settings.visitors, seed)
    v = Stream(segment, sku, market.contexts(settings.visitors, seed), u)
    run = run_engine(market, v, seed, replace(settings, engine_epsilon=epsilon, engine_floor=floor))
    scored = score(market, v, run.actions, settings.n_points)
    # The fixed evaluation policy: the candidate price nearest 90 % of list, no promotion.
    target = np.array([
        market.action_index(j, int(market.prices[j][np.argmin(np.abs(
            market.prices[j] - 0.9 * market.list_price_minor[j]))]), -1)
        for j in range(market.n_skus)
    ])[v.sku]  # fmt: skip
    after = slice(settings.first_refit, len(v.sku))
    _, realized = market.play(v.segment, v.sku, run.actions, v.u, v.context)
    hit = (run.actions[after] == target[after]).astype(float)
    w = hit / run.propensity[after]
    r = realized[after].astype(float)
    terms = w * r
    ips = float(terms.mean())
    snips = float(terms.sum() / w.sum()) if w.sum() > 0 else float("nan")
    se = float(terms.std(ddof=1) / np.sqrt(len(terms)))
    truth = float(market.expected_profit(v.segment[after], v.sku[after], target[after],
                                         v.context[after]).mean())  # fmt: skip
    return Row(
        label, epsilon, floor, seed,
        share=100 * scored["expected_profit"] / scored["oracle_expected_profit"],
        late_share=100 * scored["late_expected_profit"] / scored["late_oracle_expected_profit"],
        guaranteed=min(floor, epsilon) / market.n_actions, smallest=float(run.propensity[after].min()),
        ips=ips, snips=snips, width=2 * Z90 * se, truth=truth,
    )  # fmt: skip


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """Mean over seeds per setting (and the standard error of the profit share)."""
    out = []
    for label, epsilon, floor in dict.fromkeys((r.label, r.epsilon, r.floor) for r in rows):
        mine = [r for r in rows if r.label == label]
        share = np.array([r.share for r in mine])
        out.append({
            "label": label, "epsilon": epsilon, "floor": min(floor, epsilon), "seeds": len(mine),
            "share": share.mean(), "share_se": share.std(ddof=1) / np.sqrt(len(mine)) if len(mine) > 1 else 0.0,
            "late": np.mean([r.late_share for r in mine]),
            "guaranteed": min(r.guaranteed for r in mine), "smallest": min(r.smallest for r in mine),
            "width": np.mean([r.width for r in mine]),
            "error": np.mean([abs(r.ips - r.truth) for r in mine]),
            "snips_error": np.mean([abs(r.snips - r.truth) for r in mine]),
            "covered": sum(abs(r.ips - r.truth) <= r.width / 2 for r in mine),
        })  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> list[str]:
    """The markdown table of :func:`summarise`."""
    lines = [
        "| setting | profit, % of oracle | last quarter | guaranteed smallest propensity (c / n) | "
        "smallest logged | OPE 90 % interval width | IPS error | SNIPS error | IPS interval covers the truth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['label']} | {s['share']:.2f} ± {s['share_se']:.2f} | {s['late']:.2f} | "
            f"{s['guaranteed']:.2e} | {s['smallest']:.2e} | {s['width']:.2f} | {s['error']:.2f} | "
            f"{s['snips_error']:.2f} | {s['covered']} of {s['seeds']} |"
        )
    return lines


def plot(summary: list[dict[str, Any]]) -> None:
    """Profit vs the guaranteed smallest propensity and vs the interval width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for s in summary:
        for ax, x in zip(axes, (s["guaranteed"], s["width"]), strict=True):
            ax.errorbar(x, s["share"], yerr=s["share_se"], fmt="o", capsize=3)
            ax.annotate(s["label"], (x, s["share"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
    axes[0].set_xscale("log")
    axes[0].set_xlabel("guaranteed smallest propensity c / n (log)")
    axes[1].set_xlabel("IPS 90 % interval width, evaluation policy (minor units per visitor)")
    axes[0].set_ylabel("expected profit, % of oracle")
    fig.suptitle("Exploration: profit vs support for off-policy evaluation")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 x 3 market, 600 visitors, one seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        settings = Settings(segments=2, skus=3, categories=1, promotions=2, visitors=600,
                            seeds=(1,), first_refit=150, draws=100, tune=100, posterior_draws=200,
                            n_points=10, peers=())  # fmt: skip
    else:
        # first_refit 500: the schedule of the recorded run (docs/benchmarks.md).
        settings = Settings(visitors=args.visitors, seeds=tuple(range(1, 1 + args.seeds)), peers=(),
                            first_refit=500)  # fmt: skip
    started = time.perf_counter()
    rows = []
    for label, epsilon, floor in CONFIGS:
        for seed in settings.seeds:
            row = evaluate(label, epsilon, floor, seed, settings)
            rows.append(row)
            print(f"{label}, seed {seed}: {row.share:.2f} % of oracle (last quarter "
                  f"{row.late_share:.2f} %), smallest propensity {row.smallest:.2e}, IPS {row.ips:.1f} "
                  f"± {row.width / 2:.1f} vs truth {row.truth:.1f}", flush=True)  # fmt: skip
    summary = summarise(rows)
    lines = table(summary)
    print("\n".join(lines))
    minutes = (time.perf_counter() - started) / 60
    if args.quick or args.no_doc:
        return 0
    plot(summary)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    uniform = min(settings.engine_floor, settings.engine_epsilon)
    described = settings.describe().replace(
        f"engine ε = {settings.engine_epsilon:g} (uniform {uniform:g}), ", "engine exploration as in each row, "
    )
    section = "\n".join([
        BEGIN,
        "## Exploration: profit vs support for off-policy evaluation",
        "",
        f"- date: {stamp}; run time {minutes:.1f} min; {platform.machine()}, Python {platform.python_version()}",
        "- command: `python -m benchmarks.exploration`",
        f"- setting: {described}; every exploration setting plays the same visitors",
        "- evaluation policy: the price nearest 90 % of list, no promotion, for every visitor; "
        "estimated from the log after the first refit; truth from the simulator's demand",
        "",
        *lines,
        "",
        "![profit vs smallest propensity and interval width](img/exploration.png)",
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)
    print(f"wrote {PLOT.relative_to(DOC.parent.parent)} and the exploration section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
