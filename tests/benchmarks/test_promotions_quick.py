"""benchmarks.promotions_joint: --quick smoke run, engine wiring and the result table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import promotions_joint
from benchmarks.report import DOC
from experiments.simulator import Market


def _state(path: Path) -> tuple[bytes, int] | None:
    return (path.read_bytes(), path.stat().st_mtime_ns) if path.exists() else None


def test_quick_mode_prints_the_table_and_writes_nothing(capsys, monkeypatch):
    before = _state(DOC), _state(promotions_joint.PLOT)

    def refuse(*_args, **_kwargs):
        raise AssertionError("--quick must not write the docs or the plot")

    monkeypatch.setattr(promotions_joint, "replace_section", refuse)
    monkeypatch.setattr(promotions_joint, "plot", refuse)
    monkeypatch.setattr(promotions_joint, "start_peers", refuse)
    assert promotions_joint.main(["--quick", "--context-features", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 context features" in out  # visitors carry a device; the engine's cells and x·d see it
    assert "| policy | profit, % of oracle | expected profit, % of oracle |" in out
    for policy in ("oracle", "engine", "static"):
        assert f"| {policy} | " in out
    assert "| oracle | 100.0 | 100.0 | 100.0 | 100.0 | 0 | 0 | 0.00 |" in out
    assert "engine refits: 1 in all" in out
    assert (_state(DOC), _state(promotions_joint.PLOT)) == before


def test_engine_sees_exactly_the_simulator_candidates():
    market = Market.random(4, 12, 2, 3, seed=5)
    rules = promotions_joint.engine_guardrails(market)
    offers = promotions_joint.engine_offers(market)
    promotions_joint.check_wiring(market, rules, offers)  # raises on any mismatch
    assert [o.promotion.key for o in offers] == [p.key for p in market.promotions]


def test_settings_refit_on_a_doubling_schedule():
    settings = promotions_joint.Settings(visitors=20_000, first_refit=500)
    assert settings.refit_points() == [500, 1000, 2000, 4000, 8000, 16000]


def _result(
    policy: str,
    seed: int,
    profit: float,
    expected: float,
    oracle: float = 1000.0,
    visitors: int = 100,
) -> dict[str, Any]:
    return {
        "policy": policy, "seed": seed, "visitors": visitors, "profit": profit,
        "expected_profit": expected, "oracle_profit": oracle, "oracle_expected_profit": oracle,
        "late_expected_profit": expected / 4, "late_oracle_expected_profit": oracle / 4,
        "seconds": 1.0,
    }  # fmt: skip


def test_aggregate_and_table_report_shares_of_oracle_and_of_the_gap():
    results = [
        _result("static", 1, 600.0, 600.0),
        _result("static", 2, 600.0, 600.0),
        _result("oracle", 1, 1000.0, 1000.0),
        _result("oracle", 2, 1000.0, 1000.0),
        _result("engine", 1, 900.0, 880.0),
        _result("engine", 2, 920.0, 920.0),
    ]
    rows = {r["policy"]: r for r in promotions_joint.aggregate(results)}
    assert rows["engine"]["pct"] == pytest.approx((91.0, 1.0))
    assert rows["engine"]["pct_expected"] == pytest.approx((90.0, 2.0))
    assert rows["engine"]["gap"][0] == pytest.approx(75.0)  # (900 - 600) / (1000 - 600)
    assert rows["engine"]["regret"][0] == pytest.approx(0.9)  # USD: 90 minor units
    assert rows["static"]["gap"] == pytest.approx((0.0, 0.0))
    text = promotions_joint.table(list(rows.values()))
    assert "| engine | 91.0 ± 1.0 | 90.0 ± 2.0 | 75.0 ± 5.0 |" in text
    lines = promotions_joint.findings(results, [])
    # Paired over seeds: +30 and +32 points.
    assert any(
        "engine vs static: +31.0 ± 1.0 points" in line and "ahead of" in line for line in lines
    )
    assert np.isnan(promotions_joint._mean_se(np.array([]))[0])


def test_settings_key_leaves_out_context_only_when_there_is_none():
    plain = promotions_joint.Settings(seeds=(1, 2)).key()
    assert (
        "seeds" not in plain and "context_features" not in plain
    )  # results saved before still match
    assert promotions_joint.Settings(context_features=2).key()["context_features"] == 2


def test_refit_cells_carry_the_encoded_context(monkeypatch):
    market = Market.random(2, 2, 1, 1, seed=4, n_context_features=2)
    shape = (market.n_contexts, 2, 2, market.n_actions)
    trials = np.zeros(shape, dtype=np.int64)
    trials[5, 1, 0, 3] = 7  # context 5 = 1 × 3 + 2: device=mobile, traffic_source=email
    seen = {}

    class Fake:
        def __init__(self, **_kwargs):
            pass

        def fit(self, cells):
            seen["cells"] = cells
            raise RuntimeError("stop here")

    monkeypatch.setattr(promotions_joint, "DemandModel", Fake)
    with pytest.raises(RuntimeError, match="stop here"):
        promotions_joint._refit(
            market, trials, np.zeros_like(trials), 1, 0, promotions_joint.Settings()
        )
    cells = seen["cells"]
    assert cells.context_columns == (
        "device=mobile", "device=tablet", "traffic_source=search", "traffic_source=email",
    )  # fmt: skip
    assert cells.context.tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_an_engine_variant_reuses_the_peers_of_another_run(tmp_path, monkeypatch, capsys):
    """--peers-from: peers' results saved by another section's run count if their settings
    match; the engine variant's own ε does not matter to them."""
    settings = promotions_joint.Settings(
        segments=2, skus=2, categories=1, promotions=1, visitors=40, seeds=(1,), first_refit=10**6,
        n_points=4, engine_epsilon=0.01,
    )  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    peer_result = {"policy": "vw-epsilon", "seed": 1, "visitors": 40, "profit": 1.0,
                   "expected_profit": 1.0, "oracle_profit": 2.0, "oracle_expected_profit": 2.0,
                   "late_expected_profit": 0.5, "late_oracle_expected_profit": 1.0}  # fmt: skip
    made_by = promotions_joint.Settings(**{**settings.__dict__, "engine_epsilon": 0.05}).key()
    (other / "peers-seed1.json").write_text(
        json.dumps({"settings": made_by, "results": [peer_result]})
    )
    monkeypatch.setattr(promotions_joint, "start_peers", lambda *a, **k: pytest.fail("replayed"))
    results, _ = promotions_joint.run(
        settings, None, verbose=False, cache=tmp_path / "mine", peers_from=other
    )
    assert {r["policy"] for r in results} == {"static", "oracle", "engine", "vw-epsilon"}
    assert (
        "engine_epsilon"
        in json.loads((tmp_path / "mine" / "engine-seed1.json").read_text())["settings"]
    )
    # Peers made on another market size are not used.
    wrong = {**made_by, "skus": 3}
    (other / "peers-seed1.json").write_text(
        json.dumps({"settings": wrong, "results": [peer_result]})
    )
    results, _ = promotions_joint.run(settings, None, verbose=False, peers_from=other)
    assert "vw-epsilon" not in {r["policy"] for r in results}
    assert "made with other settings" in capsys.readouterr().out


def test_targets_compare_the_engine_with_97_percent_and_half_the_best_peers_regret():
    results = [
        _result("oracle", 1, 1000.0, 1000.0), _result("oracle", 2, 1000.0, 1000.0),
        _result("engine", 1, 975.0, 975.0), _result("engine", 2, 965.0, 965.0),
        _result("vw-epsilon", 1, 900.0, 900.0), _result("vw-epsilon", 2, 900.0, 900.0),
        _result("mabwiser-lints", 1, 850.0, 850.0), _result("mabwiser-lints", 2, 850.0, 850.0),
    ]  # fmt: skip
    lines = promotions_joint.targets(promotions_joint.aggregate(results))
    assert "| engine profit >= 97 % of the oracle's | 97.0 % ± 0.5 | met |" in lines
    # Regret 30 vs vw-epsilon's 100 minor units per seed: 0.30 of the best peer's.
    assert any(
        line.startswith("| engine regret <= 0.5 × the best peer's | 0.30 × vw-epsilon's")
        and line.endswith("| met |")
        for line in lines
    )
    lines = promotions_joint.targets(promotions_joint.aggregate(results[:2] + results[4:6] + [
        _result("engine", 1, 950.0, 950.0), _result("engine", 2, 960.0, 960.0)]))  # fmt: skip
    assert any("**missed**" in line and "97 %" in line for line in lines)


def test_on_a_reference_price_market_the_diagnostics_price_the_path_and_the_notes_say_why():
    """The engine's late diagnostics measure what its price moves cost against steady prices;
    the oracle's constant actions cost (almost) nothing; the notes explain the gap."""
    market = Market.random(3, 4, 2, 1, seed=5, family="reference")
    segment, sku = market.visitors(4000, 1)
    v = promotions_joint.Stream(segment, sku, market.contexts(4000, 1), market.purchase_draws(4000, 1))
    moving = np.random.default_rng(2).integers(market.n_actions, size=4000)
    run = promotions_joint.EngineRun(actions=moving, explored=np.zeros(4000, dtype=bool))
    late = promotions_joint.engine_late_diagnostics(market, v, run)
    assert late["reference_loss"] > 0.02
    assert abs(late["reference_loss_oracle"]) < 1e-9  # every cell's first visit is early
    settings = promotions_joint.Settings(market_family="reference")
    notes = promotions_joint.notes([{"policy": "engine", "late": late}], settings)
    assert any(n.startswith("Reference prices:") for n in notes)
    assert any(n.startswith("Not favouring the engine: the simulated demand is reference") for n in notes)
    logistic = Market.random(3, 4, 2, 1, seed=5)
    assert "reference_loss" not in promotions_joint.engine_late_diagnostics(logistic, v, run)
