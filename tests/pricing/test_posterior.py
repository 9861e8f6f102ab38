import numpy as np
import pytest

from pricing.posterior import DemandPosterior, outcome_log_likelihood
from tests.factories import synthetic_posterior


def test_conversion_probability_has_one_row_per_draw_and_falls_with_price():
    post = synthetic_posterior(n_draws=100)
    p = post.conversion_probability("default", "TEA-1", np.array([0.8, 1.0, 1.2]))
    assert p.shape == (100, 3)
    assert ((p > 0) & (p < 1)).all()
    assert (np.diff(p, axis=1) < 0).all(), "b < 0: every draw's demand falls with price"


def test_conversion_probability_matches_the_formula():
    post = synthetic_posterior(n_draws=5)
    ratio = 1.1
    eta = (
        post.a_seg[:, 1]
        + post.a_sku[:, 0]
        - np.exp(post.log_e[:, 1]) * np.log(ratio)
        + post.g[:, 0]
    )
    expected = 1 / (1 + np.exp(-eta))
    got = post.conversion_probability("loyalty", "TEA-1", ratio, promotion="promo")[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cold_start_draws_come_from_the_population_and_are_stable():
    post = synthetic_posterior(n_draws=4000)
    new_sku = post.sku_intercept("NEW-SKU")
    np.testing.assert_allclose(new_sku.mean(), post.mu_a.mean(), atol=0.05)
    np.testing.assert_allclose(
        new_sku.std(), np.sqrt(np.mean(post.sd_a_sku**2) + post.mu_a.var()), rtol=0.1
    )
    np.testing.assert_array_equal(new_sku, post.sku_intercept("NEW-SKU"))
    assert not np.array_equal(new_sku, post.sku_intercept("OTHER-SKU"))
    p = post.conversion_probability("new-segment", "NEW-SKU", 1.0, category="new-category")
    assert p.shape == (4000, 1) and np.isfinite(p).all()
    with pytest.raises(ValueError, match="pass its category"):
        post.conversion_probability("default", "NEW-SKU", 1.0)


def test_reweighting_by_likelihood_moves_weight_to_draws_that_explain_the_data():
    post = synthetic_posterior(n_draws=500, spread=0.8)
    p = post.conversion_probability("default", "TEA-1", 1.0)[:, 0]
    # 60 purchases out of 100 at list price: draws with p near 0.6 should gain weight.
    loglik = 60 * np.log(p) + 40 * np.log1p(-p)
    updated = post.reweight(loglik)
    assert updated.ess < post.ess == pytest.approx(500)
    assert abs(np.sum(updated.weights * p) - 0.6) < abs(np.mean(p) - 0.6)
    assert updated.weights.sum() == pytest.approx(1.0)


def test_round_trip_through_bytes_keeps_everything():
    post = synthetic_posterior(n_draws=50).reweight(np.linspace(0, 1, 50))
    back = DemandPosterior.from_bytes(post.to_bytes())
    assert back.segments == post.segments and back.pairs == post.pairs and back.meta == post.meta
    np.testing.assert_allclose(back.a_sku, post.a_sku, rtol=1e-6)
    np.testing.assert_array_equal(back.log_weights, post.log_weights)
    np.testing.assert_allclose(
        back.conversion_probability("loyalty", "TEA-2", 0.9),
        post.conversion_probability("loyalty", "TEA-2", 0.9),
        rtol=1e-5,
    )


def test_from_bytes_refuses_garbage():
    with pytest.raises(ValueError, match="not a demand posterior"):
        DemandPosterior.from_bytes(b"not a snapshot")


def test_inference_data_export_is_self_describing(tmp_path):
    import arviz as az

    post = synthetic_posterior(n_draws=20)
    path = tmp_path / "post.nc"
    post.to_inference_data().to_netcdf(str(path))
    idata = az.from_netcdf(str(path))
    assert list(idata.posterior["a_sku"].coords["sku"].values) == ["TEA-1", "TEA-2"]
    assert idata.posterior["log_e"].shape == (1, 20, 2)
    assert "log_weight" in idata.sample_stats


def test_elasticity_summary_interval_contains_mean():
    summary = synthetic_posterior(n_draws=400).elasticity_summary("default", "tea")
    assert summary["lower"] < summary["mean"] < summary["upper"] < 0


def test_block_weights_keep_blocks_apart_and_round_trip():
    post = synthetic_posterior(n_draws=300, spread=0.6, seed=5)
    p = post.conversion_probability("default", "TEA-1", 1.0)[:, 0]
    ll = 25 * np.log(p) + 5 * np.log1p(-p)
    block = post.block_of("default", "tea")
    assert block is not None and post.block_of("default", "coffee") is None
    shared = np.zeros(post.n_draws)
    updated = post.reweight_blocks(shared, {block: ll})
    # The block decides as a whole-model reweighting by its own outcomes would.
    np.testing.assert_allclose(updated.decision_weights("default", "TEA-2"), post.reweight(ll).weights)
    # Another block and the shared weights did not move; the smallest ESS is the block's.
    np.testing.assert_allclose(updated.decision_weights("loyalty", "TEA-1"), post.weights)
    np.testing.assert_allclose(updated.weights, post.weights)
    assert updated.ess == pytest.approx(post.reweight(ll).ess)
    assert updated.block_ess()[updated.block_of("loyalty", "tea")] == pytest.approx(300)
    # A SKU the fit never saw decides with the shared weights.
    np.testing.assert_allclose(updated.decision_weights("default", "NEW-SKU"), post.weights)
    # Elasticity summaries read the block's weights.
    assert updated.elasticity_summary("default", "tea") != post.elasticity_summary("default", "tea")
    # Stored as a snapshot row stores them, and read back.
    again = post.with_stored_weights(updated.log_weights.tobytes(), updated.stored_block_weights())
    np.testing.assert_allclose(again.decision_weights("default", "TEA-1"),
                               updated.decision_weights("default", "TEA-1"))  # fmt: skip
    assert post.with_stored_weights(post.log_weights.tobytes(), None).block_log_weights is None
    # Shared likelihood (outcomes of unfitted levels) moves every block.
    moved = post.reweight_blocks(ll, {})
    np.testing.assert_allclose(moved.decision_weights("loyalty", "TEA-1"), post.reweight(ll).weights)


def test_outcome_log_likelihood_is_the_binomial_sum_by_block():
    post = synthetic_posterior(n_draws=200, spread=0.6, seed=3)
    # One row of 10 trials equals ten rows of one outcome each; a promotion, a second
    # price and a SKU the fit never saw go where they belong.
    rows = [("default", "TEA-1", "tea", 1.0, None, None, 10, 4),
            ("default", "TEA-1", "tea", 0.9, "promo", None, 3, 3),
            ("default", "NEW-SKU", "tea", 1.0, None, None, 2, 1)]  # fmt: skip
    singles = [(*r[:6], 1, int(i < r[7])) for r in rows for i in range(r[6])]
    for split in (rows, singles):
        shared, blocks = outcome_log_likelihood(post, split, blocks=True)
        block = post.block_of("default", "tea")
        p = post.conversion_probability("default", "TEA-1", 1.0)
        lift = post.conversion_probability("default", "TEA-1", 0.9, promotion="promo")[:, 0]
        expected = 4 * np.log(p[:, 0]) + 6 * np.log1p(-p[:, 0]) + 3 * np.log(lift)
        assert set(blocks) == {block}
        np.testing.assert_allclose(blocks[block], expected, rtol=1e-9)
        new = post.conversion_probability("default", "NEW-SKU", 1.0, category="tea")[:, 0]
        np.testing.assert_allclose(shared, np.log(new) + np.log1p(-new), rtol=1e-9)
    # Without blocks every outcome is shared.
    shared, blocks = outcome_log_likelihood(post, rows)
    assert blocks == {}
    np.testing.assert_allclose(shared, sum(outcome_log_likelihood(post, rows, blocks=True)[1].values())
                               + outcome_log_likelihood(post, rows, blocks=True)[0], rtol=1e-9)  # fmt: skip
