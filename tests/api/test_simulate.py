"""The living demo's customers are the market simulator's, built over the demo catalog."""

from __future__ import annotations

import math
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pytest

from api.simulate import _draw, demo_market
from pricing.promotions import Promotion


def _product(sku: str, category: str, price: int, cost: int) -> SimpleNamespace:
    return SimpleNamespace(
        sku=sku, category=category, list_price_minor=price, unit_cost_minor=cost, currency="USD"
    )


PRODUCTS = [_product("COF-1", "coffee", 2199, 1291), _product("TEA-1", "tea", 499, 250)]
PROMOTIONS = [
    Promotion(key="COFFEE10", kind="percent_off", percent_off=Decimal("10"), currency="USD"),
    Promotion(key="FREESHIP", kind="free_shipping", shipping_cost_minor=495, currency="USD"),
]


def test_demo_market_has_the_documented_truth():
    market = demo_market(PRODUCTS, ["new", "loyal"], PROMOTIONS, seed=7)
    assert market.skus == ("COF-1", "TEA-1") and market.categories == ("coffee", "tea")
    np.testing.assert_allclose(market.segment_mix, [2 / 3, 1 / 3])
    eta = (
        0.35 * _draw(7, "seg", "loyal")
        - 1.3
        + 0.5 * _draw(7, "sku", "TEA-1")
        - 1.8 * math.exp(0.35 * _draw(7, "e", "loyal", "tea")) * math.log(0.9)
        + 0.35
    )
    p = float(
        market.probability_at_ratio(1, 1, 0.9, 1)
    )  # loyal, TEA-1, paid 90 % of list, FREESHIP
    assert p == pytest.approx(1 / (1 + math.exp(-eta)))
    assert market.promotions[0].discount_minor(2199) == 220  # 10 % of 21.99, rounded half up
    assert market.promotion_cost(1) == 495


def test_a_names_truth_does_not_move_when_the_catalog_grows():
    small = demo_market(PRODUCTS[:1], ["new"], [], seed=7)
    large = demo_market(PRODUCTS, ["new", "loyal"], PROMOTIONS, seed=7)
    assert small.a_sku[0] == large.a_sku[0] and small.a_seg[0] == large.a_seg[0]
    assert small.log_e[0, 0] == large.log_e[0, 0]
    assert demo_market(PRODUCTS, ["new"], [], seed=8).a_sku[0] != small.a_sku[0]


def test_probability_at_ratio_rejects_a_non_positive_price():
    market = demo_market(PRODUCTS, ["new"], [], seed=7)
    with pytest.raises(ValueError, match="positive"):
        market.probability_at_ratio(0, 0, 0.0)


def test_the_half_way_refit_uses_the_prior_at_list_when_the_service_does(monkeypatch):
    import api.simulate as simulate_module

    seen = {}

    def fake_refit(_sessions, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(snapshot_id=1, published=True, message="", n_cells=2, n_trials=3)

    monkeypatch.setattr(simulate_module, "refit", fake_refit)
    note = simulate_module._refit(None, {"draws": 10}, prior_at_list=True)
    assert seen["prior_at_list"] is True and seen["sampler_config"] == {"draws": 10}
    assert note.startswith("model version 1 published")


def test_the_demo_refit_follows_the_fit_settings(tmp_path, monkeypatch, capsys):
    """``seed-demo --simulate`` fits with PRICING_FIT_* as the updater does (it used to
    fit the model's defaults whatever was set)."""
    import api.simulate as simulate_module
    from api.cli import main

    seen = {}

    def fake_refit(_sessions, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(snapshot_id=1, published=True, message="", n_cells=2, n_trials=3)

    monkeypatch.setattr(simulate_module, "refit", fake_refit)
    monkeypatch.setenv("PRICING_FIT_DRAWS", "120")
    monkeypatch.setenv("PRICING_FIT_TUNE", "80")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["seed-demo", "--simulate", "40", "--database-url", url]) == 0
    assert seen["sampler_config"] == {"method": "auto", "draws": 120, "tune": 80}
    assert "2 chains x 120 draws (+80 tuning)" in capsys.readouterr().out
