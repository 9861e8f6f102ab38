"""In-process decision latency per quote line vs Vowpal Wabbit ``cb_explore_adf``.

    python -m benchmarks.decision_latency                 # writes docs/benchmarks.md
    python -m benchmarks.decision_latency --quick         # smoke run, engine only

Ours: ThompsonPricePolicy.decide on one line with a 50-price guardrail ladder and 500
posterior draws (guardrail resolution, ladder, P(buy) under every draw, argmax per draw,
exact propensity). Peer: VW ``--cb_explore_adf --epsilon 0.05`` predict on 50 actions
(one shared context feature set, one price feature per action), trained on a few
thousand examples first. VW runs in its own virtual environment (``--vw-python``, or
``benchmarks/.venv-peers`` created on demand with ``pip install vowpalwabbit``), never as
an engine dependency. Both are timed in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.report import replace_section
from pricing.guardrails import GuardrailSet, Rule
from pricing.policy import LineContext, ThompsonPricePolicy
from pricing.posterior import DemandPosterior

PEERS = Path(__file__).resolve().parent / ".venv-peers"
BEGIN, END = "<!-- latency:begin -->", "<!-- latency:end -->"

VW_SCRIPT = r"""
import json, sys, time
import numpy as np
import vowpalwabbit
n_actions, n, seed = int(sys.argv[1]), int(sys.argv[2]), 0
rng = np.random.default_rng(seed)
vw = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.05 --quiet")
prices = np.linspace(0.5, 1.5, n_actions)
def example(segment, label=None):
    lines = [f"shared |s seg_{segment} device_mobile"]
    for i, p in enumerate(prices):
        head = f"{label[1]}:{label[2]}:{label[3]} " if label is not None and label[0] == i else ""
        lines.append(f"{head}|a price_{i} p:{p:.4f}")
    return lines
for t in range(3000):
    a = int(rng.integers(n_actions))
    vw.learn(example(int(rng.integers(20)), (a, a, -float(rng.random() < 0.3) * prices[a], 1.0 / n_actions)))
times = []
for t in range(n):
    ex = example(t % 20)
    start = time.perf_counter()
    vw.predict(ex)
    times.append(time.perf_counter() - start)
print(json.dumps({"p50_us": float(np.percentile(times, 50) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6), "n": n}))
"""


def synthetic(n_draws: int, seed: int = 0) -> DemandPosterior:
    """A posterior of the engine's own shape: 20 segments, 50 SKUs, 500 draws."""
    rng = np.random.default_rng(seed)
    segments = tuple(f"seg{i}" for i in range(20))
    skus = tuple(f"SKU-{j:03d}" for j in range(50))
    pairs = tuple((s, "cat") for s in segments)
    d = n_draws
    return DemandPosterior(
        segments=segments, skus=skus, categories=("cat",), promotions=(), sku_category=dict.fromkeys(skus, "cat"),
        pairs=pairs, a_seg=rng.normal(0, 0.3, (d, 20)), a_sku=rng.normal(-1.5, 0.5, (d, 50)),
        log_e=rng.normal(0.4, 0.3, (d, 20)), g=np.zeros((d, 0)), mu_a=rng.normal(-1.5, 0.1, d),
        sd_a_sku=np.full(d, 0.5), sd_a_seg=np.full(d, 0.3), mu_global=np.full(d, 0.4), sd_cat=np.full(d, 0.3),
        sd_seg=np.full(d, 0.3), mu_cat=np.full((d, 1), 0.4), log_weights=rng.normal(0, 0.5, d), meta={"version": "bench"},
    )  # fmt: skip


def engine_latency(n: int, n_draws: int = 500, n_prices: int = 50) -> dict[str, float]:
    """p50/p99 of ``decide`` in microseconds."""
    posterior = synthetic(n_draws)
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.5, max_increase=0.5),))
    policy = ThompsonPricePolicy(
        lambda: ("bench", posterior), lambda: rules, epsilon=0.05, n_prices=n_prices, seed=1
    )
    times = []
    for t in range(n + 200):
        line = LineContext(
            f"seg{t % 20}", f"SKU-{t % 50:03d}", "cat", "USD", 1999, 900, anchor_price_minor=None
        )
        start = time.perf_counter()
        decision = policy.decide(line)
        elapsed = time.perf_counter() - start
        if t >= 200:  # warm-up excluded
            times.append(elapsed)
    assert decision.candidates == n_prices, decision.candidates
    return {
        "p50_us": float(np.percentile(times, 50) * 1e6),
        "p99_us": float(np.percentile(times, 99) * 1e6),
        "n": n,
    }


def peer_python(path: str | None) -> str:
    """The peers' interpreter, creating ``benchmarks/.venv-peers`` when needed."""
    if path:
        return path
    python = PEERS / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(PEERS)])
        subprocess.check_call(
            [str(python), "-m", "pip", "install", "--quiet", "vowpalwabbit", "numpy"]
        )
    return str(python)


def vw_latency(python: str, n: int, n_actions: int = 50) -> dict[str, float]:
    """Run VW's predict timing in the peers' environment."""
    out = subprocess.run(
        [python, "-c", VW_SCRIPT, str(n_actions), str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def write_doc(ours: dict[str, float], vw: dict[str, float], command: str) -> None:
    """Replace the latency section of docs/benchmarks.md."""
    ratio = ours["p99_us"] / vw["p99_us"]
    section = "\n".join([
        BEGIN,
        "## Decision latency per quote line vs Vowpal Wabbit",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- command: `{command}`",
        "- ours: `ThompsonPricePolicy.decide`, 50-price guardrail ladder, 500 posterior draws, exact propensity; "
        "peer: VW 9 `--cb_explore_adf --epsilon 0.05` predict on 50 actions, in its own venv. "
        f"{int(ours['n']):,} timed decisions each after warm-up.",
        "",
        "| | p50 (µs) | p99 (µs) |",
        "|---|---:|---:|",
        f"| engine (Thompson sampling, 500 draws x 50 prices) | {ours['p50_us']:.0f} | {ours['p99_us']:.0f} |",
        f"| Vowpal Wabbit cb_explore_adf (50 actions) | {vw['p50_us']:.0f} | {vw['p99_us']:.0f} |",
        "",
        f"p99 ratio engine / VW: **{ratio:.2f}** (target <= 0.5: {'met' if ratio <= 0.5 else 'missed'}).",
        "",
        END,
    ])  # fmt: skip
    replace_section(BEGIN, END, section)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="engine only, few decisions, no document"
    )
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--vw-python", help="python of an environment with vowpalwabbit installed")
    args = parser.parse_args(argv)
    if args.quick:
        ours = engine_latency(200)
        print(f"engine p50 {ours['p50_us']:.0f} us, p99 {ours['p99_us']:.0f} us")
        return 0
    ours = engine_latency(args.n)
    vw = vw_latency(peer_python(args.vw_python), args.n)
    print(f"engine p50 {ours['p50_us']:.0f} us, p99 {ours['p99_us']:.0f} us")
    print(
        f"VW     p50 {vw['p50_us']:.0f} us, p99 {vw['p99_us']:.0f} us; p99 ratio {ours['p99_us'] / vw['p99_us']:.2f}"
    )
    write_doc(
        ours,
        vw,
        "python -m benchmarks.decision_latency" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
