"""Decayed cells: merging, validation, and the likelihood they give the demand model."""

import numpy as np
import pytest

from pricing.cells import CellRecord, Cells, decay_weight
from pricing.demand import DemandModel


def _records(weight_old: float) -> list[CellRecord]:
    out = []
    for s, segment in enumerate(("a", "b")):
        for j, sku in enumerate(("x", "y")):
            for ratio, conv in ((0.9, 12 + s + j), (1.1, 6 + s)):
                out.append(CellRecord(segment, sku, "c", ratio, "", 40, conv))
                out.append(CellRecord(segment, sku, "c", ratio, "", 20, 2 * (conv // 3), weight=weight_old))
    return out


def test_decay_weight_halves_every_half_life_and_is_off_at_zero():
    assert decay_weight(0, 30) == 1.0
    assert decay_weight(30, 30) == pytest.approx(0.5)
    assert decay_weight(90, 30) == pytest.approx(0.125)
    assert decay_weight(1e9, 30) == 1e-6
    assert decay_weight(365, 0) == 1.0


def test_records_of_one_cell_merge_their_decayed_counts():
    cells = Cells.from_records(_records(0.25))
    assert cells.trials.tolist() == [60] * len(cells)
    assert cells.weighted_trials is not None and cells.weighted_conversions is not None
    assert np.allclose(cells.weighted_trials, 40 + 0.25 * 20)
    assert (cells.weighted_conversions <= cells.weighted_trials).all()
    assert Cells.from_records(_records(1.0)).weighted_trials is None
    with pytest.raises(ValueError, match="weight"):
        Cells.from_records([CellRecord("a", "x", "c", 1.0, "", 5, 1, weight=0.0)])


def test_decayed_likelihood_is_the_binomial_kernel_on_decayed_counts():
    """Against plain cells whose counts are the decayed ones (integral here), the model's
    log density differs by a constant only (the binomial normaliser): same posterior."""
    decayed = Cells.from_records(_records(0.5))
    assert decayed.weighted_trials is not None and decayed.weighted_conversions is not None
    n, k = decayed.weighted_trials, decayed.weighted_conversions
    assert np.allclose(n, np.round(n)) and np.allclose(k, np.round(k))
    plain = Cells(decayed.segment, decayed.sku, decayed.category, decayed.log_price_ratio,
                  decayed.promotion, np.round(n).astype(np.int64), np.round(k).astype(np.int64))  # fmt: skip
    model_d, model_p = DemandModel().build(decayed), DemandModel().build(plain)
    logp_d, logp_p = model_d.compile_logp(), model_p.compile_logp()
    rng = np.random.default_rng(0)
    point = model_d.initial_point()
    differences = []
    for _ in range(3):
        shifted = {name: value + rng.normal(0, 0.3, np.shape(value)) for name, value in point.items()}
        differences.append(float(logp_d(shifted)) - float(logp_p(shifted)))
    assert np.ptp(differences) < 1e-6, differences
