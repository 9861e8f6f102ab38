"""LP pacing (pricing.pacing): closed form vs HiGHS, exact propensities, edge cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from pricing.pacing import choose_paced, lp_choice_probabilities, lp_mixture, spend_rate

SLACK = 1e-9


def _optimum(reward_row: Any, spend_row: Any, rates: Any) -> float | None:
    """Optimal value of one draw's LP by HiGHS, or None when infeasible.

    ``spend_row`` has shape (n,) for one budget or (n, m) for m budgets.
    """
    spend_row = np.asarray(spend_row, dtype=float).reshape(len(reward_row), -1)
    result = linprog(
        -np.asarray(reward_row, dtype=float),
        A_ub=spend_row.T,
        b_ub=np.atleast_1d(rates),
        A_eq=np.ones((1, len(reward_row))),
        b_eq=[1.0],
        bounds=(0, None),
        method="highs",
    )
    return float(-result.fun) if result.status == 0 else None


def _check_against_linprog(reward: Any, spend: Any, rates: Any) -> Any:
    """Every draw: a distribution, within budget, with the HiGHS optimal value."""
    x = lp_mixture(reward, spend, rates)
    assert x.shape == reward.shape
    assert (x >= 0).all()
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-12)
    s3 = spend if spend.ndim == 3 else spend[:, :, None]
    c = np.atleast_1d(rates)
    for d in range(reward.shape[0]):
        best = _optimum(reward[d], s3[d], c)
        assert best is not None, "the test problem should be feasible"
        scale = 1.0 + np.abs(reward[d]).max()
        used = x[d] @ s3[d]
        assert (used <= c + SLACK * (1.0 + np.abs(s3[d]).max())).all(), (d, used, c)
        assert x[d] @ reward[d] == pytest.approx(best, abs=1e-8 * scale), d
    return x


def _problem(
    rng: np.random.Generator, draws: int, n: int, budgets: int = 1, zero_column: bool = False
) -> tuple[Any, Any, Any]:
    """A random feasible problem: rates between the cheapest and the dearest spend."""
    reward = rng.normal(1.0, 1.0, (draws, n))
    spend = rng.gamma(2.0, 1.0, (draws, n, budgets))
    anchor = rng.integers(n)
    if zero_column:
        spend[:, anchor] = 0.0
    # Feasible in every draw: the anchor candidate fits every budget.
    floor = spend[:, anchor].max(axis=0)
    top = np.maximum(spend.max(axis=(0, 1)), floor)
    rates = floor + rng.random(budgets) * (top - floor)
    if budgets == 1:
        return reward, spend[:, :, 0], float(rates[0])
    return reward, spend, rates


@pytest.mark.parametrize("zero_column", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_single_budget_closed_form_matches_highs(seed, zero_column):
    rng = np.random.default_rng(seed)
    reward, spend, rate = _problem(rng, draws=8, n=int(rng.integers(2, 9)), zero_column=zero_column)
    _check_against_linprog(reward, spend, rate)


@pytest.mark.parametrize("seed", range(15))
def test_two_budgets_match_a_direct_linprog(seed):
    rng = np.random.default_rng(1000 + seed)
    reward, spend, rates = _problem(rng, draws=4, n=int(rng.integers(2, 7)), budgets=2,
                                    zero_column=bool(seed % 2))  # fmt: skip
    _check_against_linprog(reward, spend, rates)


@settings(max_examples=150, deadline=None)
@given(
    reward=st.lists(st.integers(-3, 6), min_size=2, max_size=6),
    spend=st.lists(st.integers(0, 4), min_size=2, max_size=6),
    rate=st.integers(0, 8).map(lambda k: k / 2),
)
def test_closed_form_on_degenerate_grids(reward, spend, rate):
    """Ties in reward and spend, and rates equal to a candidate's spend, are where closed
    forms go wrong; small integer grids produce plenty of them."""
    n = min(len(reward), len(spend))
    r = np.array([reward[:n]], dtype=float)
    s = np.array([spend[:n]], dtype=float)
    if s.min() > rate:  # infeasible draw: the cheapest candidate is served
        x = lp_mixture(r, s, rate)
        assert x[0, int(np.argmin(s[0]))] == 1.0
        return
    _check_against_linprog(r, s, rate)


def test_several_zero_spend_columns_collapse_to_the_best_one():
    rng = np.random.default_rng(7)
    reward = rng.normal(0.0, 1.0, (20, 6))
    spend = rng.gamma(2.0, 1.0, (20, 6))
    spend[:, [1, 4]] = 0.0
    x = _check_against_linprog(reward, spend, 0.7)
    # A zero-spend column that is worse than the other one in a draw is never served.
    worse = np.where(reward[:, 1] < reward[:, 4], 1, 4)
    assert (x[np.arange(20), worse] == 0.0).all()


def test_dividing_spend_by_the_rate_gives_the_same_solution():
    """benchmarks.pacing_ferreira passes per-replication rates this way."""
    rng = np.random.default_rng(3)
    reward, spend, rate = _problem(rng, draws=50, n=5, zero_column=True)
    np.testing.assert_allclose(lp_mixture(reward, spend / rate, 1.0),
                               lp_mixture(reward, spend, rate), atol=1e-9)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 7), budgets=st.sampled_from([1, 2]))
def test_rows_are_distributions(seed, n, budgets):
    rng = np.random.default_rng(seed)
    reward = rng.normal(size=(5, n))
    spend = rng.gamma(1.0, 1.0, (5, n, budgets))
    rates = rng.gamma(1.0, 1.0, budgets)  # possibly infeasible: still a distribution
    x = lp_mixture(reward, spend, rates)
    assert (x >= 0).all()
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-12)


def test_infeasible_draw_serves_the_cheapest_candidate():
    reward = np.array([[5.0, 1.0, 3.0]])
    spend = np.array([[4.0, 3.0, 2.5]])
    np.testing.assert_array_equal(lp_mixture(reward, spend, 1.0), [[0.0, 0.0, 1.0]])


def test_mixes_two_candidates_to_spend_exactly_the_rate():
    # Best affordable alone: value 1 (spend 0); the 1:3 mix of candidates 0 and 2 spends 1
    # and earns 0.75 * 1 + 0.25 * 10 = 3.25 > 1.
    reward = np.array([[1.0, 0.0, 10.0]])
    spend = np.array([[0.0, 0.5, 4.0]])
    x = lp_mixture(reward, spend, 1.0)
    np.testing.assert_allclose(x, [[0.75, 0.0, 0.25]])
    assert x[0] @ spend[0] == pytest.approx(1.0)


# ---- spend_rate


@pytest.mark.parametrize(
    ("budget", "decisions", "expected"),
    [
        (100.0, 50.0, 2.0),
        (0.0, 10.0, 0.0),
        (-5.0, 10.0, 0.0),  # overspent: nothing left to pace
        (10.0, 0.0, float("inf")),  # no decision expected
        (10.0, -1.0, float("inf")),
        (0.0, 0.0, float("inf")),
        (3.0, 0.5, 6.0),
    ],
)
def test_spend_rate(budget, decisions, expected):
    assert spend_rate(budget, decisions) == expected


def test_exhausted_budget_serves_only_free_candidates():
    reward = np.array([[3.0, 9.0, 1.0], [0.5, 2.0, 4.0]])
    spend = np.array([[0.0, 1.0, 0.0], [0.0, 0.3, 0.2]])
    x = lp_mixture(reward, spend, spend_rate(-1.0, 20.0))
    np.testing.assert_array_equal(x, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


# ---- infinite rate


def test_infinite_rate_is_the_argmax_of_each_draw():
    rng = np.random.default_rng(11)
    reward = rng.normal(size=(30, 6))
    spend = rng.gamma(2.0, 1.0, (30, 6))
    for rates, s in (
        (float("inf"), spend),
        (np.array([np.inf, np.inf]), np.stack([spend, spend], axis=2)),
    ):
        x = lp_mixture(reward, s, rates)
        expected = np.zeros_like(reward)
        expected[np.arange(30), reward.argmax(axis=1)] = 1.0
        np.testing.assert_array_equal(x, expected)
    # With only one of two budgets binding, the other is ignored.
    s2 = np.stack([spend, 100.0 * spend], axis=2)
    np.testing.assert_array_equal(lp_mixture(reward, s2, np.array([0.8, np.inf])),
                                  lp_mixture(reward, spend, 0.8))  # fmt: skip


def test_infinite_rate_ties_go_to_the_first_candidate():
    x = lp_mixture(np.array([[1.0, 2.0, 2.0]]), np.array([[0.0, 1.0, 1.0]]), float("inf"))
    np.testing.assert_array_equal(x, [[0.0, 1.0, 0.0]])


# ---- propensities


def test_choice_probabilities_formula():
    mixtures = np.array([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0]])
    weights = np.array([0.6, 0.4])
    p = lp_choice_probabilities(mixtures, weights, 0.3)
    np.testing.assert_allclose(p, 0.7 * np.array([0.7, 0.3, 0.0]) + 0.1)
    assert p.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("epsilon", [0.0, 0.15])
def test_choose_paced_propensities_are_exact(epsilon):
    rng = np.random.default_rng(20180101)
    mixtures = np.array([
        [0.5, 0.5, 0.0, 0.0, 0.0],
        [0.0, 0.1, 0.9, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.3, 0.7],
        [1.0, 0.0, 0.0, 0.0, 0.0],
    ])  # fmt: skip
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    expected = lp_choice_probabilities(mixtures, weights, epsilon)
    n = 20_000
    counts = np.zeros(5)
    explored = 0
    for _ in range(n):
        choice = choose_paced(mixtures, weights, epsilon, rng)
        assert choice.propensity == expected[choice.index]
        counts[choice.index] += 1
        explored += choice.explored
    np.testing.assert_array_equal(choice.probabilities, expected)
    frequency = counts / n
    sd = np.sqrt(expected * (1 - expected) / n)
    assert (np.abs(frequency - expected) <= 4.5 * sd + 1e-12).all(), (frequency, expected)
    if epsilon == 0.0:
        assert explored == 0
    else:
        assert abs(explored / n - epsilon) <= 4.5 * np.sqrt(epsilon * (1 - epsilon) / n)


def test_choose_paced_never_serves_a_zero_probability_candidate():
    rng = np.random.default_rng(5)
    mixtures = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    weights = np.array([0.0, 1.0, 0.0])  # zero-weight draws are never picked
    seen = {choose_paced(mixtures, weights, 0.0, rng).index for _ in range(2000)}
    assert seen == {2}


# ---- bad input


@pytest.mark.parametrize(
    ("reward", "spend", "rates"),
    [
        (np.ones(3), np.ones(3), 1.0),  # 1-D reward
        (np.ones((2, 3)), np.ones((2, 4)), 1.0),  # n disagrees
        (np.ones((2, 3)), np.ones((3, 3)), 1.0),  # D disagrees
        (np.ones((2, 3)), np.ones((2, 3, 2)), 1.0),  # two budgets, one rate
        (np.ones((2, 3)), np.ones((2, 3)), np.array([1.0, 1.0])),  # one budget, two rates
        (np.ones((2, 3)), np.ones((2, 3)), -0.1),  # negative rate
        (np.ones((2, 3)), np.ones((2, 3, 2)), np.array([1.0, -1.0])),
        (np.ones((2, 3)), np.ones((2, 3)), float("nan")),
    ],
)
def test_bad_input_raises_value_error(reward, spend, rates):
    with pytest.raises(ValueError):
        lp_mixture(reward, spend, rates)


@pytest.mark.parametrize(
    ("spend", "rates"),
    [(np.ones((2, 3, 1, 2)), 1.0), (np.ones((2, 3)), np.array([[1.0]]))],
)
def test_wrong_dimensions_raise_value_error(spend, rates):
    with pytest.raises(ValueError, match="disagree"):
        lp_mixture(np.ones((2, 3)), spend, rates)


@pytest.mark.parametrize("epsilon", [-0.01, 1.01])
def test_choose_paced_rejects_epsilon_outside_unit_interval(epsilon):
    with pytest.raises(ValueError):
        choose_paced(np.eye(2), np.array([0.5, 0.5]), epsilon, np.random.default_rng(0))
