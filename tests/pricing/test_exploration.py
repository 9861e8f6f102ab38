"""Exploration with a propensity floor and mass near the Thompson choice (pricing/thompson.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.thompson import (
    choice_probabilities,
    explore,
    greedy_probabilities,
    neighbour_spread,
    sample,
)


def _within(counts: np.ndarray, exact: np.ndarray, n: int) -> bool:
    se = np.sqrt(exact * (1 - exact) / n)
    return bool(np.all(np.abs(counts / n - exact) <= 5 * se + 1e-12))


@pytest.mark.parametrize(("epsilon", "floor"), [(0.05, 0.01), (0.2, 0.0), (0.1, 0.1), (0.3, 0.05)])
def test_the_sampler_serves_exactly_the_distribution_it_logs(epsilon, floor):
    """Monte Carlo: frequencies match the exact propensities, per candidate, with two
    ladders (a promotion's prices never neighbour the plain ones)."""
    rng = np.random.default_rng(11)
    profit = rng.normal(size=(300, 9))
    weights = rng.dirichlet(np.ones(300))
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2])
    greedy = greedy_probabilities(profit, weights)
    exact = choice_probabilities(profit, weights, epsilon, floor=floor, groups=groups)
    assert exact.sum() == pytest.approx(1.0)
    counts = np.zeros(9)
    n = 60_000
    for _ in range(n):
        choice = sample(greedy, epsilon, rng, floor=floor, groups=groups)
        assert choice.propensity == pytest.approx(exact[choice.index], rel=1e-12)
        counts[choice.index] += 1
    assert _within(counts, exact, n)


@settings(max_examples=200, deadline=None)
@given(
    greedy=st.lists(st.floats(0, 1), min_size=1, max_size=30).filter(lambda g: sum(g) > 0),
    epsilon=st.floats(0, 1),
    floor=st.floats(0, 1),
    cut=st.integers(0, 30),
)
def test_every_allowed_action_keeps_the_floor_and_the_distribution_sums_to_one(greedy, epsilon, floor, cut):
    g = np.array(greedy) / sum(greedy)
    groups = (np.arange(len(g)) >= cut).astype(int)
    p = explore(g, epsilon, floor=floor, groups=groups)
    assert p.sum() == pytest.approx(1.0)
    assert np.all(p >= min(floor, epsilon) / len(g) - 1e-15)
    assert np.all(p >= (1 - epsilon) * g - 1e-15)


def test_neighbour_mass_stays_next_to_the_thompson_choice_and_on_its_ladder():
    g = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    groups = np.array([0, 0, 0, 1, 1, 1, 1])
    # The choice at index 2 ends its ladder: its one neighbour is index 1, not index 3.
    assert neighbour_spread(g, groups).tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # Inside a ladder the two neighbours share it; a one-price ladder keeps its mass.
    assert neighbour_spread(np.array([0, 1.0, 0]), None).tolist() == [0.5, 0.0, 0.5]
    assert neighbour_spread(np.array([0.25, 0.75]), np.array([0, 1])).tolist() == [0.25, 0.75]
    p = explore(g, 0.05, floor=0.01, groups=groups)
    assert p[1] == pytest.approx(0.04 + 0.01 / 7)
    assert p[3] == pytest.approx(0.01 / 7)  # across the ladder's end: the floor only


def test_a_floor_equal_to_epsilon_is_the_classic_uniform_mixture():
    rng = np.random.default_rng(2)
    profit = rng.normal(size=(50, 6))
    weights = rng.dirichlet(np.ones(50))
    classic = choice_probabilities(profit, weights, 0.05)
    assert np.allclose(choice_probabilities(profit, weights, 0.05, floor=0.05), classic)
    assert np.allclose(choice_probabilities(profit, weights, 0.05, floor=0.5), classic)
    g = greedy_probabilities(profit, weights)
    assert np.allclose(classic, 0.95 * g + 0.05 / 6)


def test_the_policy_logs_the_floor_and_neighbour_propensities(monkeypatch):
    """Through ThompsonPricePolicy: repeated decisions of one line match the logged
    propensities, and the cheapest and dearest prices keep at least the floor."""
    from pricing.guardrails import GuardrailSet, Rule
    from pricing.policy import LineContext, ThompsonPricePolicy
    from tests.factories import synthetic_posterior

    posterior = synthetic_posterior(n_draws=200, seed=4)
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.2),))
    policy = ThompsonPricePolicy(lambda: ("v1", posterior), lambda: rules, epsilon=0.2, floor=0.02,
                                 seed=1, n_prices=13)  # fmt: skip
    line = LineContext("default", "TEA-1", "tea", "USD", 1000, 400)
    seen: dict[int, float] = {}
    counts: dict[int, int] = {}
    n = 20_000
    for _ in range(n):
        d = policy.decide(line)
        assert seen.setdefault(d.price_minor, d.propensity) == pytest.approx(d.propensity)
        counts[d.price_minor] = counts.get(d.price_minor, 0) + 1
    assert sum(seen.values()) <= 1.0 + 1e-9
    for price, p in seen.items():
        se = np.sqrt(p * (1 - p) / n)
        assert abs(counts[price] / n - p) <= 5 * se + 1e-9
        assert p >= 0.02 / d.candidates - 1e-12
    assert len(seen) == d.candidates  # every allowed price was served
