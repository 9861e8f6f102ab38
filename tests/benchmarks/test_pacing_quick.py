"""benchmarks.pacing_ferreira --quick: a smoke run that prints its table and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import pacing_ferreira
from benchmarks.report import DOC


def _state(path: Path) -> Any:
    return (path.read_bytes(), path.stat().st_mtime_ns) if path.exists() else None


def test_quick_mode_prints_the_table_and_leaves_the_docs_alone(capsys, monkeypatch):
    before = _state(DOC), _state(pacing_ferreira.PLOT)

    def refuse(*_args, **_kwargs):
        raise AssertionError("--quick must not write docs/benchmarks.md")

    monkeypatch.setattr(pacing_ferreira, "replace_section", refuse)
    assert pacing_ferreira.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| α | T | algorithm | % of LP bound (± s.e.) | reps | paper (approx.) |" in out
    for alpha in pacing_ferreira.ALPHAS:
        for algorithm in pacing_ferreira.ALGORITHMS:
            assert f"| {alpha} | 100 | {algorithm} |" in out
    assert (_state(DOC), _state(pacing_ferreira.PLOT)) == before


def test_lp_bound_per_period_matches_the_hand_computation():
    # α = 0.25: mix 39.9 (3/4) and 44.9 (1/4): 0.75 * 11.97 + 0.25 * 4.49.
    # α = 0.5: mix 34.9 (2/3) and 39.9 (1/3): (2 * 20.94 + 11.97) / 3.
    assert pacing_ferreira.lp_value(pacing_ferreira.THETA, 0.25) == pytest.approx(10.1)
    assert pacing_ferreira.lp_value(pacing_ferreira.THETA, 0.5) == pytest.approx(17.95)


def test_simulation_is_deterministic_and_respects_inventory():
    def revenue(seed: int) -> Any:
        return pacing_ferreira.simulate(0.25, 80, 30, True, np.random.default_rng(seed))

    first = revenue(1)
    np.testing.assert_array_equal(first, revenue(1))
    # At most α·T = 20 units sold, each at no more than the top price.
    assert (first <= 20 * pacing_ferreira.PRICES.max() + 1e-9).all()
    assert (first >= 0).all()
