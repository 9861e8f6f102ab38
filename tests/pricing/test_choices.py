"""Per-line action distributions: computed once per posterior, sampled exactly, paced lines
re-solved in the background when their rates move."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import pricing.choices as choices
from pricing.choices import ChoiceCache, quantize_rate, shutdown_solver_process
from pricing.pacing import lp_choice_probabilities, lp_mixture
from pricing.thompson import choice_probabilities, greedy_probabilities, sample


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    reward = rng.normal(1.0, 0.5, (50, 6))
    spend = np.abs(rng.normal(0.5, 0.3, (50, 6)))
    spend[:, 0] = 0.0  # the no-promotion candidate spends nothing
    return reward, spend


def _paced_distribution(reward, spend):
    weights = np.full(reward.shape[0], 1.0 / reward.shape[0])

    def solve(rates):
        mixtures = lp_mixture(reward, spend, rates)
        return lp_choice_probabilities(mixtures, weights, 0.0)

    return solve


def test_a_new_line_is_computed_at_once_and_then_served_from_the_cache():
    cache, owner = ChoiceCache(), object()
    calls = []

    def compute():
        calls.append(1)
        return np.array([0.25, 0.75])

    first = cache.get(owner, ("seg", "A"), compute)
    again = cache.get(owner, ("seg", "A"), compute)
    assert again is first and len(calls) == 1
    assert cache.computed_inline == 1 and cache.hits == 1


def test_a_new_posterior_empties_the_cache():
    cache = ChoiceCache()
    first = cache.get(object(), "k", lambda: np.array([1.0]))
    other = cache.get(object(), "k", lambda: np.array([0.5, 0.5]))
    assert other is not first and cache.computed_inline == 2 and len(cache) == 1


def test_the_cache_keeps_at_most_max_lines():
    cache, owner = ChoiceCache(max_lines=3), object()
    for i in range(10):
        cache.get(owner, i, lambda: np.array([1.0]))
    assert len(cache) == 3


def test_a_moved_rate_serves_the_distribution_in_hand_and_solves_the_new_one_in_the_background():
    cache, owner = ChoiceCache(), object()
    reward, spend = _problem(1)
    solve = _paced_distribution(reward, spend)
    old, new = np.array([0.3]), np.array([0.1])
    first = cache.get_paced(owner, ("k",), old, solve)
    np.testing.assert_allclose(first, solve(old))
    served = cache.get_paced(owner, ("k",), new, solve)
    assert served is first  # what the quote uses (and logs the propensity of)
    cache.wait_idle()
    assert cache.computed_background == 1
    fresh = cache.get_paced(owner, ("k",), new, solve)
    np.testing.assert_allclose(fresh, solve(new))


def test_a_background_solution_for_a_replaced_posterior_is_dropped():
    cache, old_owner = ChoiceCache(), object()
    gate = threading.Event()

    def slow(rates):
        gate.wait(5)
        return np.array([0.0, 1.0])

    cache.get_paced(old_owner, "k", np.array([1.0]), lambda r: np.array([1.0, 0.0]))
    cache.get_paced(old_owner, "k", np.array([2.0]), slow)  # background solve starts
    new_owner = object()
    fresh = cache.get_paced(new_owner, "k", np.array([2.0]), lambda r: np.array([0.5, 0.5]))
    gate.set()
    cache.wait_idle()
    again = cache.get_paced(new_owner, "k", np.array([2.0]), slow)
    assert again is fresh


def _solved_in(cache, reward, spend, rates):
    """A background re-solve of a paced line whose heavy part goes through ``cache.heavy``;
    returns the distribution it stored."""
    weights = np.full(reward.shape[0], 1.0 / reward.shape[0])

    def solve(r):
        mixtures = cache.heavy(lp_mixture, reward, spend, r)
        return lp_choice_probabilities(mixtures, weights, 0.0)

    owner = object()
    cache.get_paced(owner, "k", np.array([10.0]), solve)  # first solve: inline, here
    cache.get_paced(owner, "k", rates, solve)  # moved: re-solved in the background
    cache.wait_idle(timeout=120)
    return cache.get_paced(owner, "k", rates, solve)


def test_background_solves_run_in_the_solver_process_with_the_same_answer():
    reward, spend = _problem(3)
    rates = np.array([0.2])
    here = ChoiceCache()
    there = ChoiceCache(processes=True)
    try:
        expected = _solved_in(here, reward, spend, rates)
        got = _solved_in(there, reward, spend, rates)
        pool = choices._SOLVER
        assert pool is not None  # a child process was started ...
        pids = list(pool._processes)  # type: ignore[attr-defined]
        assert pids and all(pid != os.getpid() for pid in pids)
    finally:
        shutdown_solver_process()
    assert there.computed_in_process == 1 and here.computed_in_process == 0
    np.testing.assert_array_equal(got, expected)  # ... and solved exactly the same LP
    # A line's first solve, and a call from any other thread, run where they are called.
    assert there.heavy(lp_mixture, reward, spend, rates).shape == reward.shape
    assert there.computed_in_process == 1 and choices._SOLVER is None


def test_a_killed_solver_process_loses_no_solve_and_is_replaced():
    reward, spend = _problem(4)
    cache = ChoiceCache(processes=True)
    try:
        _solved_in(cache, reward, spend, np.array([0.3]))
        pool = choices._SOLVER
        assert pool is not None
        for pid in list(pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        # The broken child's solve runs in-process; after a pause, another child.
        expected = ChoiceCache()
        broken = _solved_in(cache, reward, spend, np.array([0.2]))
        np.testing.assert_array_equal(broken, _solved_in(expected, reward, spend, np.array([0.2])))
        assert choices._SOLVER is None and cache.computed_in_process == 1
        _solved_in(cache, reward, spend, np.array([0.15]))  # within the pause: in-process
        assert choices._SOLVER is None and cache.computed_in_process == 1
        choices._SOLVER_FAILED_AT = -np.inf  # the pause is over
        again = _solved_in(cache, reward, spend, np.array([0.1]))
        np.testing.assert_array_equal(again, _solved_in(expected, reward, spend, np.array([0.1])))
        assert choices._SOLVER is not None and choices._SOLVER is not pool
        assert cache.computed_in_process == 2
    finally:
        choices._SOLVER_FAILED_AT = -np.inf
        shutdown_solver_process()


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_sampling_the_distribution_is_thompson_sampling_over_every_draw(epsilon):
    """The cached sampler and the full one have the same distribution and propensities."""
    rng = np.random.default_rng(5)
    profit = rng.normal(size=(400, 7))
    weights = rng.dirichlet(np.ones(400))
    greedy = greedy_probabilities(profit, weights)
    exact = choice_probabilities(profit, weights, epsilon)
    counts = np.zeros(7)
    n = 40_000
    for _ in range(n):
        choice = sample(greedy, epsilon, rng)
        assert choice.propensity == pytest.approx(exact[choice.index], rel=1e-12)
        counts[choice.index] += 1
    # Every cell within 5 standard errors of its exact probability.
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(counts / n - exact) <= 5 * se + 1e-12)


def test_a_candidate_of_probability_zero_is_never_sampled():
    rng = np.random.default_rng(0)
    greedy = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
    seen = {sample(greedy, 0.0, rng).index for _ in range(5000)}
    assert seen == {1, 3}


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


def test_the_sampler_draws_exactly_what_searchsorted_drew():
    """``sample`` bisects a list CDF (numpy.searchsorted releases the GIL): the same
    candidate for every draw, zeros and ties included."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        greedy = rng.random(n) * (rng.random(n) < 0.7)
        if greedy.sum() == 0:
            greedy[0] = 1.0
        greedy /= greedy.sum()
        served = (np.full(n, 1.0 / n), np.cumsum(greedy).tolist())
        seed = int(rng.integers(2**32))
        got = sample(greedy, 0.0, np.random.default_rng(seed), served=served)
        draw = np.random.default_rng(seed)
        draw.random()  # the exploration coin
        cdf = np.cumsum(greedy)
        expected = int(np.searchsorted(cdf, draw.random() * cdf[-1], side="right"))
        assert got.index == min(expected, int(np.flatnonzero(greedy)[-1]))
