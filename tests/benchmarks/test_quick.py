"""Each benchmark's --quick mode runs as a smoke test (no timing assertions)."""

import pytest

from benchmarks import refit


@pytest.mark.slow
def test_refit_benchmark_quick_mode(capsys):
    assert refit.main(["--quick", "--methods", "nuts,advi"]) == 0
    out = capsys.readouterr().out
    assert "20 cells  nuts" in out and "20 cells  advi" in out


def test_refit_benchmark_table_reports_ratios_against_nuts():
    rows = [
        {"cells": 100, "method": "nuts", "seconds": 10.0, "max_rhat": 1.0, "min_ess": 800.0, "divergences": 0,
         "passed": True, "retried": False, "approximate": False, "ess_per_s": 80.0, "rmse_b": 0.1},
        {"cells": 100, "method": "advi", "seconds": 2.5, "max_rhat": float("nan"), "min_ess": 900.0, "divergences": 0,
         "passed": True, "retried": False, "approximate": True, "ess_per_s": 360.0, "rmse_b": 0.2},
    ]  # fmt: skip
    text = refit.table(rows)
    assert "| 100 | advi | 2.5 | 0.25 | n/a (approx.) |" in text
    assert "| 100 | nuts | 10.0 | 1.00 |" in text


def test_decision_latency_benchmark_quick_mode(capsys):
    from benchmarks import decision_latency

    assert decision_latency.main(["--quick"]) == 0
    assert "engine p50" in capsys.readouterr().out
