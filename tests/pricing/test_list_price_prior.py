"""Priors centred where the merchant's list prices are optimal (issue 18, item 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pricing.cells import CellRecord, Cells
from pricing.priors import list_price_anchors, list_price_log_elasticity


def _profit(ratio, e, a, price, cost):
    p = 1.0 / (1.0 + np.exp(-(a - e * np.log(ratio))))
    return (ratio * price - cost) * p


@pytest.mark.parametrize(("price", "cost", "p0"), [(1000, 500, 0.2), (2500, 1800, 0.05), (800, 100, 0.6)])
def test_the_list_price_is_optimal_at_the_anchor_elasticity(price, cost, p0):
    e = math.exp(float(list_price_log_elasticity([price], [cost], [p0])[0]))
    a = math.log(p0 / (1 - p0))
    ratio = np.linspace(0.5, 1.5, 100_001)
    best = ratio[np.argmax(_profit(ratio, e, a, price, cost))]
    assert best == pytest.approx(1.0, abs=1e-4)
    # Below or at cost no elasticity makes the list price optimal.
    assert np.isnan(list_price_log_elasticity([500, 400], [500, 600], [0.1, 0.1])).all()


def test_anchors_read_the_conversion_at_list_from_the_cells_and_take_the_median():
    records = [
        CellRecord("s", "A", "shoes", 1.0, "", 99, 19),  # P0 = 19.5 / 100 (Jeffreys)
        CellRecord("s", "A", "shoes", 0.9, "", 50, 30),  # not at list: ignored for P0
        CellRecord("s", "B", "shoes", 1.0, "promo", 50, 30),  # promoted: ignored for P0
        CellRecord("s", "C", "hats", 1.0, "", 9, 0),
    ]
    cells = Cells.from_records(records)
    products = {"A": ("shoes", 1000, 500), "B": ("shoes", 1000, 600), "C": ("hats", 1000, 990),
                "D": ("hats", 1000, 1200), "Z": ("socks", 1000, 1000)}  # fmt: skip
    anchors = list_price_anchors(cells, products)
    assert set(anchors) == {"shoes", "hats"}  # socks: no SKU with a margin
    pooled = (19 + 30 + 30 + 0 + 0.5) / (99 + 50 + 50 + 9 + 1)
    a = float(list_price_log_elasticity([1000], [500], [0.195])[0])
    b = float(list_price_log_elasticity([1000], [600], [pooled])[0])  # B: no unpromoted list cell
    assert anchors["shoes"] == pytest.approx((a + b) / 2)
    # C's margin of 1 % would ask for an elasticity of about 100: clipped to the bound.
    assert anchors["hats"] == pytest.approx(math.log(8.0))


def test_the_demand_model_centres_anchored_categories_and_leaves_the_others_on_the_global_mean():
    import pymc as pm

    from pricing.demand import DemandModel

    records = [CellRecord("s", sku, cat, r, "", 40, 8) for sku, cat in (("A", "shoes"), ("B", "hats"))
               for r in (0.9, 1.0, 1.1)]  # fmt: skip
    cells = Cells.from_records(records)
    model = DemandModel(model_config={"category_log_elasticity_anchor": {"shoes": 1.2}})
    built = model.build(cells)
    mu_cat = pm.draw(built["mu_cat"], draws=4000, random_seed=1)
    shoes = model.coords_["category"].index("shoes")
    hats = model.coords_["category"].index("hats")
    assert np.mean(mu_cat[:, shoes]) == pytest.approx(1.2, abs=0.03)
    assert np.std(mu_cat[:, shoes]) < 0.6  # sd_cat only
    assert np.mean(mu_cat[:, hats]) == pytest.approx(math.log(1.5), abs=0.08)  # mu_global's mean
    assert np.std(mu_cat[:, hats]) > 0.9  # mu_global's sd too
    # The anchor is part of the model's identity; a model without one keeps its old hash.
    assert model.config_hash != DemandModel().config_hash
    assert "category_log_elasticity_anchor" not in DemandModel().config_dict()


def test_a_category_refitted_alone_keeps_the_base_fits_anchor():
    """Fan-out refits: with the prior at list, a category is centred on its anchor, not on
    the population level held from the full fit."""
    import pymc as pm

    from pricing.fanout import SharedParameters, category_model

    shared = SharedParameters(mu_global=0.2, sd_cat=0.3, sd_seg=0.3, mu_a=-2.0, sd_a_sku=0.5)
    cells = Cells.from_records([CellRecord("s", "A", "shoes", r, "", 40, 8) for r in (0.9, 1.0, 1.1)])
    anchored = category_model(shared, model_config={"category_log_elasticity_anchor": {"shoes": 1.1}})
    plain = category_model(shared)
    for model, centre in ((anchored, 1.1), (plain, 0.2)):
        draws = pm.draw(model.build(cells)["mu_cat"], draws=4000, random_seed=2)
        assert np.mean(draws) == pytest.approx(centre, abs=0.03)
        assert np.std(draws) == pytest.approx(0.3, abs=0.03)


def test_a_category_named_like_a_prior_key_is_still_an_anchor():
    from pricing.demand import DemandModel

    model = DemandModel(model_config={"category_log_elasticity_anchor": {"dist": 0.7}})
    assert model.model_config["category_log_elasticity_anchor"] == {"dist": 0.7}
    with pytest.raises(ValueError, match="unknown prior distribution"):
        DemandModel(model_config={"promotion_lift": {"mu": 0.0}})
