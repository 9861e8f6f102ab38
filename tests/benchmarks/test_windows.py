"""benchmarks.windows: windows against list prices from saved per-seed results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import windows


def _run(policy: str, rate: list[float], step: int = 400) -> dict:
    """A saved run whose expected profit per visitor is ``rate[i]`` between checkpoints."""
    t = step * np.arange(1, len(rate) + 1)
    cum = np.cumsum(np.asarray(rate) * step)
    return {"policy": policy, "t": t.tolist(), "cum_oracle_expected_profit": (2 * cum).tolist(),
            "cum_expected_regret": cum.tolist()}  # fmt: skip


def test_the_worst_window_after_the_first_is_found_at_the_checkpoints():
    static = _run("static", [1.0] * 10)
    # 0.5 in the first 800 visitors (the first window: left out), 0.9 for visitors 1,600-2,000.
    engine = _run("engine", [0.5, 0.5, 1.2, 1.2, 0.9, 1.2, 1.2, 1.2, 1.2, 1.2])
    worst, window = windows.worst_window(engine, static)
    assert window == 1200  # the shortest multiple of 400 >= 1,000
    assert worst == pytest.approx((1.2 + 0.9 + 1.2) / 3)
    with pytest.raises(ValueError, match="different checkpoints"):
        windows.worst_window(_run("x", [1.0] * 10, step=500), static)
    with pytest.raises(ValueError, match="no window after the first"):
        windows.worst_window(_run("x", [1.0] * 3), _run("static", [1.0] * 3))


def test_rows_read_engine_and_peers_per_seed_and_verdicts_check_the_targets(tmp_path, monkeypatch):
    folder = tmp_path / "misspecified-linear"
    folder.mkdir()
    for seed, dip in ((1, 0.99), (2, 0.97)):
        engine = [_run("static", [1.0] * 10), _run("oracle", [2.0] * 10),
                  _run("engine", [1.0, 1.0, 1.3, dip, dip, dip, 1.3, 1.3, 1.3, 1.3])]  # fmt: skip
        (folder / f"engine-seed{seed}.json").write_text(json.dumps({"results": engine}))
        (folder / f"peers-seed{seed}.json").write_text(
            json.dumps({"results": [_run("vw-epsilon", [1.1] * 10)]})
        )
    rows = windows.market_rows("misspecified-linear", "linear", tmp_path)
    by = {r.policy: r for r in rows}
    assert set(by) == {"engine", "vw-epsilon"} and by["engine"].seeds == 2
    assert by["engine"].worst_window == pytest.approx(97.0)
    assert by["vw-epsilon"].whole_run == pytest.approx(110.0)
    lines = windows.verdicts(rows, alpha=0.02)
    assert "(target >= 98 % over 1,000: **missed**)" in lines[0] and "ahead of every peer" in lines[0]
    assert "worst window of 1,200 visitors" in lines[0]
    assert "| linear | engine | 2 | 1,200 | 97.0 |" in "\n".join(windows.table(rows))
