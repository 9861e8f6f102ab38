"""The pacing LP's per-line cache: exact when fresh, the used solution when rates move."""

from __future__ import annotations

import threading

import numpy as np

from pricing.pacing import lp_mixture
from pricing.policy import PacingCache, quantize_rate


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    reward = rng.normal(1.0, 0.5, (50, 6))
    spend = np.abs(rng.normal(0.5, 0.3, (50, 6)))
    spend[:, 0] = 0.0  # the no-promotion candidate spends nothing
    return reward, spend


def test_a_new_line_is_solved_at_once_and_then_served_from_the_cache():
    cache = PacingCache()
    reward, spend = _problem()
    rates = np.array([0.3])
    first = cache.solve(("v1", "seg", "A"), reward, spend, rates)
    np.testing.assert_allclose(first, lp_mixture(reward, spend, rates))
    again = cache.solve(("v1", "seg", "A"), reward, spend, rates)
    assert again is first and cache.solved_inline == 1


def test_a_moved_rate_serves_the_solution_in_hand_and_solves_the_new_one_in_the_background():
    cache = PacingCache()
    reward, spend = _problem(1)
    old, new = np.array([0.3]), np.array([0.1])
    first = cache.solve(("k",), reward, spend, old)
    served = cache.solve(("k",), reward, spend, new)
    assert served is first  # what the quote uses (and logs the propensity of)
    cache.wait_idle()
    assert cache.solved_background == 1
    fresh = cache.solve(("k",), reward, spend, new)
    np.testing.assert_allclose(fresh, lp_mixture(reward, spend, new))


def test_rates_are_solved_on_a_grid_that_never_exceeds_the_rate():
    for rate in (0.013, 1.0, 7.77, 1234.5):
        q = quantize_rate(rate)
        assert q <= rate + 1e-12 and q > rate / 1.021
    assert quantize_rate(0.0) == 0.0 and quantize_rate(float("inf")) == float("inf")


def test_the_policy_decides_safely_from_many_threads():
    from pricing.guardrails import GuardrailSet, Rule
    from pricing.policy import LineContext, ThompsonPricePolicy
    from tests.factories import synthetic_posterior

    posterior = synthetic_posterior(n_draws=100, seed=3)
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.2),))
    policy = ThompsonPricePolicy(lambda: ("v1", posterior), lambda: rules, epsilon=0.1, seed=9)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(300):
                decision = policy.decide(LineContext("default", "TEA-1", "tea", "USD", 1000, 400))
                assert 0 < decision.propensity <= 1 and 700 <= decision.price_minor <= 1200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
