"""OPE on the market simulator: intervals cover the true value of an evaluation policy."""

from __future__ import annotations

import numpy as np

from experiments.ope import evaluate
from experiments.simulator import Market


def _policies(market: Market) -> tuple[np.ndarray, np.ndarray]:
    """Logging: softmax of expected profit (temperature 1/3 of its spread) with a 10% floor;
    evaluation: the oracle with 20% uniform exploration. Shapes (S, J, A)."""
    table = market.expected_profit_table
    scaled = table / (table.std(axis=2, keepdims=True) + 1e-9) * 3
    soft = np.exp(scaled - scaled.max(axis=2, keepdims=True))
    soft /= soft.sum(axis=2, keepdims=True)
    n = table.shape[2]
    logging = 0.9 * soft + 0.1 / n
    evaluation = np.full(table.shape, 0.2 / n)
    best = market.oracle_actions
    s, j = np.indices(best.shape)
    evaluation[s, j, best] += 0.8
    return logging, evaluation


def test_ope_intervals_cover_the_simulators_true_policy_value():
    market = Market.random(3, 4, 2, 1, seed=11)
    logging, evaluation = _policies(market)
    table = market.expected_profit_table / 100.0  # currency units
    truth = float((evaluation * table).sum(axis=2).mean())  # contexts are uniform over (s, j)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    widths = {"ips": [], "dr": []}
    seeds = 60
    n = 1500
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        s = rng.integers(market.n_segments, size=n)
        j = rng.integers(market.n_skus, size=n)
        p_log = logging[s, j]
        u = rng.random(n)[:, None]
        action = (p_log.cumsum(axis=1) < u).sum(axis=1).clip(max=market.n_actions - 1)
        prices, promos = market.action_prices[j, action], market.action_promotion[action]
        bought = rng.random(n) < market.conversion_probability(s, j, prices, promos)
        reward = market.profit(j, prices, promos, bought) / 100.0
        pscore = p_log[np.arange(n), action]
        action_dist = evaluation[s, j][:, :, None]
        # A deliberately imperfect reward model: the truth with 20% multiplicative noise.
        q_hat = (table[s, j] * rng.lognormal(0.0, 0.2, size=table[s, j].shape))[:, :, None]
        results = evaluate(reward, action, pscore, action_dist, estimated_rewards_by_reg_model=q_hat,
                           ci="clt", min_ess=50)  # fmt: skip
        for name, r in results.items():
            covered[name] += r.lower <= truth <= r.upper
        widths["ips"].append(results["ips"].upper - results["ips"].lower)
        widths["dr"].append(results["dr"].upper - results["dr"].lower)
    for name, hits in covered.items():
        assert hits / seeds >= 0.85, (name, hits / seeds)
    assert np.mean(widths["dr"]) < np.mean(widths["ips"])  # the reward model pays off
