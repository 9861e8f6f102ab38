"""Never worse than list prices, window by window: every market's saved runs against list.

    python -m benchmarks.windows             # reads benchmarks/results/, writes docs/benchmarks.md
    python -m benchmarks.windows --no-doc    # prints only

Issue 18's target for the markets the engine's model does not describe: beyond the first
window, the engine's expected profit over any window of 1,000 visitors never falls below
(1 − α) × what list prices earn on the same visitors, and over the whole run it is ahead of
every peer. This reads the per-seed results that :mod:`benchmarks.promotions_joint` saved
for each market's section (``benchmarks/results/<section>/``: learning curves of expected
profit at checkpoints, the same visitors for every policy), so it plays nothing again.

Windows are cut at the saved checkpoints: the shortest window of at least 1,000 visitors
that they allow is used when the checkpoints are 1,000 apart or less (e.g. 1,200 visitors
with checkpoints every 400), and windows start after the first 1,000 visitors. A window's
figure is the policy's expected profit in it as % of list prices' (the ``static`` policy)
in the same window.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.report import replace_section

RESULTS = Path(__file__).resolve().parent / "results"
BEGIN, END = "<!-- windows:begin -->", "<!-- windows:end -->"
#: Section name -> market described in the table.
SECTIONS = {
    "misspecified-linear": "linear",
    "misspecified-probit": "probit",
    "misspecified-exponential": "exponential",
    "misspecified-interaction": "interaction (1 context feature)",
    "misspecified-reference": "reference price",
    "decision-quality": "logistic, 20 x 50, 200,000 visitors, ε 0.05 (uniform)",
    "decision-quality-eps01": "logistic, 20 x 50, 200,000 visitors, ε 0.01 (uniform)",
    "decision-quality-eps02": "logistic, 20 x 50, 200,000 visitors, ε 0.02, floor 0.01",
}
#: Sections whose peers were not played again but read from another section's results
#: (``promotions_joint --peers-from``: the same markets and visitors).
PEERS_FROM = {
    "decision-quality-eps02": "decision-quality",
    "decision-quality-eps01": "decision-quality",
}
WIDTH = 1000


@dataclass(frozen=True)
class Row:
    """One policy in one market: worst window and whole run, as % of list's."""

    market: str
    policy: str
    seeds: int
    window: int
    worst_window: float
    whole_run: float
    whole_run_min: float


def expected_curve(result: dict[str, Any]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(checkpoints, cumulative expected profit in minor units) of one saved policy run."""
    t = np.asarray(result["t"], dtype=np.int64)
    cum = np.asarray(result["cum_oracle_expected_profit"]) - np.asarray(
        result["cum_expected_regret"]
    )
    return t, cum


def worst_window(
    policy: dict[str, Any], static: dict[str, Any], width: int = WIDTH
) -> tuple[float, int]:
    """Worst ratio of ``policy``'s expected profit to ``static``'s over windows after the first.

    Parameters
    ----------
    policy, static : dict
        Saved results of two policies on the same visitors (same checkpoints).
    width : int
        Visitors per window; the first window (visitors 0 to ``width``) is left out.

    Returns
    -------
    (float, int)
        The worst ratio, and the window length used: the smallest multiple of the
        checkpoint spacing that is at least ``width``.
    """
    t, cum = expected_curve(policy)
    t_static, base = expected_curve(static)
    if not np.array_equal(t, t_static):
        raise ValueError("the two runs have different checkpoints")
    step = int(t[1] - t[0]) if len(t) > 1 else int(t[0])
    k = max(1, math.ceil(width / step))
    ratios = [
        (cum[i + k] - cum[i]) / (base[i + k] - base[i])
        for i in range(len(t) - k)
        if t[i] >= width and base[i + k] > base[i]
    ]
    if not ratios:
        raise ValueError(f"a run of {int(t[-1])} visitors has no window after the first")
    return float(min(ratios)), k * step


def market_rows(section: str, label: str, results: Path = RESULTS) -> list[Row]:
    """Rows for one saved section (engine and peers, each against list prices)."""
    folder = results / section
    by_policy: dict[str, list[tuple[float, float, int]]] = {}
    for engine_file in sorted(folder.glob("engine-seed*.json")):
        runs = {r["policy"]: r for r in json.loads(engine_file.read_text())["results"]}
        peers_file = (
            results
            / PEERS_FROM.get(section, section)
            / engine_file.name.replace("engine-", "peers-")
        )
        if peers_file.exists():
            runs |= {r["policy"]: r for r in json.loads(peers_file.read_text())["results"]}
        static = runs["static"]
        for policy, run in runs.items():
            if policy in ("static", "oracle"):
                continue
            worst, window = worst_window(run, static)
            whole = expected_curve(run)[1][-1] / expected_curve(static)[1][-1]
            by_policy.setdefault(policy, []).append((worst, float(whole), window))
    return [
        Row(label, policy, len(v), v[0][2], 100 * min(w for w, _, _ in v),
            100 * float(np.mean([c for _, c, _ in v])), 100 * min(c for _, c, _ in v))
        for policy, v in by_policy.items()
    ]  # fmt: skip


def table(rows: list[Row]) -> list[str]:
    """Markdown table of ``rows``."""
    return [
        "| market | policy | seeds | window, visitors | worst window after the first, % of list's (worst seed) | whole run, % of list's (mean) | whole run (lowest seed) |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(f"| {r.market} | {r.policy} | {r.seeds} | {r.window:,} | {r.worst_window:.1f} | {r.whole_run:.1f} | "
          f"{r.whole_run_min:.1f} |" for r in rows),
    ]  # fmt: skip


def verdicts(rows: list[Row], alpha: float = 0.02) -> list[str]:
    """One line per market: the window target and whether the engine is ahead of every peer."""
    out = []
    for market in dict.fromkeys(r.market for r in rows):
        mine = [r for r in rows if r.market == market]
        engine = next((r for r in mine if r.policy == "engine"), None)
        if engine is None:
            continue
        peers = [r for r in mine if r is not engine]
        floor = 100 * (1 - alpha)
        window = "met" if engine.worst_window >= floor else "**missed**"
        ahead = all(engine.whole_run > p.whole_run for p in peers)
        out.append(
            f"- {market}: worst window of {engine.window:,} visitors (starting at checkpoints, not "
            f"sliding) {engine.worst_window:.1f} % of list's (target >= {floor:.0f} % over 1,000: "
            f"{window}); whole run {engine.whole_run:.1f} % of list's, "
            + (f"ahead of every peer (best {max(p.whole_run for p in peers):.1f} %)" if peers and ahead
               else "no peers in this run" if not peers else "**not** ahead of every peer")
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    rows = [row for section, label in SECTIONS.items() if (RESULTS / section).is_dir()
            for row in market_rows(section, label)]  # fmt: skip
    lines = table(rows)
    checks = verdicts(rows)
    print("\n".join([*lines, "", *checks]))
    if args.no_doc:
        return 0
    section = "\n".join([
        BEGIN,
        "## Window by window against list prices, in every market",
        "",
        "- command: `python -m benchmarks.windows` (reads the per-seed results saved in `benchmarks/results/` by "
        "the `promotions_joint` sections named in `benchmarks/windows.py`; plays nothing again)",
        "- the engine at its settings in each run, safe start off; peers as in those runs. A window's figure is "
        "expected profit as % of list prices' on the same visitors; windows start after the first 1,000 visitors "
        "and are as short as the saved checkpoints allow (at least 1,000 visitors). The first 5,000 visitors "
        "with safe start on are in the safe-start section.",
        "",
        *lines,
        "",
        "Against issue 18's targets (α = 0.02):",
        "",
        *checks,
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)
    print("wrote the windows section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
