"""Safe start (pricing/safe_start.py): never below (1 - α) × list price's expected profit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pricing.guardrails import GuardrailSet, Rule
from pricing.policy import LineContext, ThompsonPricePolicy
from pricing.safe_start import JointSafetyBudget, SafetyBudget, tail_mean
from pricing.thompson import explore
from tests.factories import synthetic_posterior


def test_the_tail_mean_is_the_mean_of_the_lowest_share_of_the_weight():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(200, 3))
    equal = np.full(200, 1 / 200)
    expected = np.sort(values, axis=0)[:20].mean(axis=0)
    np.testing.assert_allclose(tail_mean(values, equal, 0.1), expected)
    # A draw straddling the boundary counts with the part of its weight inside.
    w = np.array([0.05, 0.1, 0.85])
    v = np.array([[1.0], [2.0], [3.0]])
    assert tail_mean(v, w, 0.1)[0] == pytest.approx((0.05 * 1 + 0.05 * 2) / 0.1)
    assert tail_mean(v, w, 1.0)[0] == pytest.approx(w @ v[:, 0])
    with pytest.raises(ValueError):
        tail_mean(v, w, 0.0)


def _policy(alpha: float, seed: int = 3, epsilon: float = 0.05, kind=SafetyBudget):
    posterior = synthetic_posterior(n_draws=300, seed=seed, spread=0.5)
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.3),))
    safety = kind(alpha, confidence=0.9)
    policy = ThompsonPricePolicy(lambda: ("v1", posterior), lambda: rules, epsilon=epsilon, floor=0.01,
                                 seed=seed, n_prices=13, safety=safety)  # fmt: skip
    return policy, posterior, safety


@pytest.mark.parametrize("kind", [SafetyBudget, JointSafetyBudget])
@pytest.mark.parametrize("alpha", [0.0, 0.02, 0.1])
def test_the_promise_holds_under_the_posterior_after_every_decision(alpha, kind):
    """Per draw d, the cumulative surplus Σ_t π_d(a_t) − (1 − α) π_d(list) over the served
    decisions has a 10 % lower tail mean >= 0: with probability >= 90 % under the posterior
    the engine earned at least (1 − α) × what list prices would have. The summed-tails
    budget bounds it from below; the joint budget holds exactly this quantity."""
    policy, posterior, safety = _policy(alpha, kind=kind)
    lines = [LineContext(seg, sku, "tea", "USD", 1000, 400) for seg in ("default", "loyalty")
             for sku in ("TEA-1", "TEA-2")]  # fmt: skip
    w = posterior.weights
    surplus = {line.sku: np.zeros(posterior.n_draws) for line in lines}
    gated = 0
    for t in range(1500):
        line = lines[t % len(lines)]
        d = policy.decide(line)
        gated += d.reasons == ("safe_start",)
        ratio = np.array([d.price_minor, 1000]) / 1000
        margin = np.array([d.price_minor, 1000], dtype=float) - 400
        pi = posterior.expected_profit(line.segment, line.sku, ratio, margin, category="tea")
        surplus[line.sku] += pi[:, 0] - (1 - alpha) * pi[:, 1]
        if kind is SafetyBudget:
            assert safety.budget() >= -1e-9 and safety.budget(line.sku) >= -1e-9
        for values in (surplus[line.sku], sum(surplus.values())):
            assert tail_mean(values[:, None], w, 0.1)[0] >= -1e-6
    if alpha == 0.0:
        assert gated > 0
    if alpha == 0.1:  # a budget to spend: many lines are the engine's own decisions
        assert gated < 1500 * 0.8
    assert safety.gated == gated


def test_the_guard_moves_only_what_the_budget_cannot_afford_and_logs_exact_propensities():
    """A blocked candidate's mass goes to the reference; the propensity returned is the
    probability of what was served, which repeated draws from the same state confirm."""
    rng = np.random.default_rng(4)
    probs = np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    costs = np.array([-5.0, -0.5, 1.0, 2.0, -3.0])
    reference = 2
    counts = np.zeros(5)
    logged = {}
    n = 20_000
    for _ in range(n):
        budget = SafetyBudget(0.02)
        budget.spend("A", 1.0)  # room 1.0: candidates 0 and 4 cannot be afforded, 1 can
        served, propensity, blocked = budget.serve("A", costs, probs, reference, int(rng.choice(5, p=probs)))
        counts[served] += 1
        assert logged.setdefault(served, propensity) == pytest.approx(propensity)
        assert budget.budget("A") >= 0 and blocked == (served == reference and budget.gated == 1)
    expected = np.array([0.0, 0.2, 0.6, 0.2, 0.0])
    assert logged == pytest.approx({1: 0.2, 2: 0.6, 3: 0.2})
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(counts / n - expected) <= 5 * se + 1e-12)


def test_an_engine_with_a_budget_serves_its_own_choices_exactly():
    policy, _, safety = _policy(0.02)
    line = LineContext("default", "TEA-1", "tea", "USD", 1000, 400)
    safety.spend("TEA-1", 1e9)
    safety.spend("TEA-2", 0.0)
    prices = list(np.arange(700, 1301, 50))
    d = policy.decide(line)
    key = next(iter(policy.choices._entries))

    served = explore(policy.choices._entries[key][1], policy.epsilon, floor=policy.floor)
    for _ in range(200):
        assert d.reasons != ("safe_start",)
        assert d.propensity == pytest.approx(served[prices.index(d.price_minor)])
        d = policy.decide(line)


def test_without_safe_start_nothing_is_gated():
    posterior = synthetic_posterior(n_draws=100, seed=2)
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.3),))
    policy = ThompsonPricePolicy(lambda: ("v1", posterior), lambda: rules, seed=1)
    line = LineContext("default", "TEA-1", "tea", "USD", 1000, 400)
    assert all(policy.decide(line).reasons != ("safe_start",) for _ in range(200))


def test_past_decisions_are_revalued_under_each_new_posterior():
    """Kazerouni et al. bound the past with the current confidence set: when another
    posterior is served, a SKU's budget becomes the sum of its past decisions' c(a) under
    that posterior, and a budget found negative lets through only what adds to it."""
    rng = np.random.default_rng(7)
    old, new = object(), object()
    costs = {old: np.array([-1.0, 0.5, 0.1]), new: np.array([2.0, -0.4, 0.1])}
    probs = np.array([0.3, 0.3, 0.4])
    budget = SafetyBudget(0.02)
    budget.spend("A", 10.0)  # a fixed allowance, never re-valued
    served = np.zeros(3)
    for _ in range(40):
        s, _, _ = budget.serve("A", costs[old], probs, 2, int(rng.choice(3, p=probs)),
                               line="L", recost=costs.__getitem__, posterior=old)  # fmt: skip
        served[s] += 1
    assert budget.budget("A") == pytest.approx(10.0 + served @ costs[old])
    # The next decision under the new posterior re-values the 40 first.
    s, _, _ = budget.serve("A", costs[new], probs, 2, 2, line="L", recost=costs.__getitem__,
                           posterior=new)  # fmt: skip
    served[s] += 1
    assert budget.revalued == 1
    assert budget.budget("A") == pytest.approx(10.0 + served @ costs[new])
    assert budget.budget() == pytest.approx(budget.budget("A"))

    # Found negative: candidate 1 (c < 0) is blocked; 0 adds more than the reference
    # would (0.3 > 0.1), so it is still served.
    worse = object()
    costs[worse] = np.array([0.3, -1.0, 0.1])
    gone = SafetyBudget(0.02)
    for _ in range(20):
        gone.serve("B", costs[old], probs, 2, 1, line="L", recost=costs.__getitem__, posterior=old)
    assert gone.budget("B") == pytest.approx(10.0)
    s, p, blocked = gone.serve("B", costs[worse], probs, 2, 1, line="L",
                               recost=costs.__getitem__, posterior=worse)  # fmt: skip
    assert gone.budget("B") == pytest.approx(-20.0 + 0.1)
    assert (s, blocked) == (2, True) and p == pytest.approx(0.7)
    s, p, blocked = gone.serve("B", costs[worse], probs, 2, 0, line="L",
                               recost=costs.__getitem__, posterior=worse)  # fmt: skip
    assert (s, blocked) == (0, False) and p == pytest.approx(0.3)


def test_the_policy_revalues_its_past_when_the_posterior_changes():
    """End to end: the budget after a posterior change equals the past decisions' costs
    recomputed by the policy under the new posterior."""
    first = synthetic_posterior(n_draws=300, seed=3, spread=0.5)
    second = synthetic_posterior(n_draws=300, seed=4, spread=0.2)
    served = {"post": first}
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.3),))
    safety = SafetyBudget(0.05, confidence=0.9)
    policy = ThompsonPricePolicy(lambda: ("v", served["post"]), lambda: rules, epsilon=0.05,
                                 floor=0.01, seed=5, n_prices=13, safety=safety)  # fmt: skip
    line = LineContext("default", "TEA-1", "tea", "USD", 1000, 400)
    prices = np.arange(700, 1301, 50)
    counts = np.zeros(len(prices))
    for _ in range(300):
        counts[np.searchsorted(prices, policy.decide(line).price_minor)] += 1
    served["post"] = second
    d = policy.decide(line)
    counts[np.searchsorted(prices, d.price_minor)] += 1
    profit = second.expected_profit("default", "TEA-1", prices / 1000, (prices - 400).astype(float),
                                    category="tea")  # fmt: skip
    expected = safety.costs(profit, second.decision_weights("default", "TEA-1"), 6)
    assert safety.revalued == 1
    assert safety.budget("TEA-1") == pytest.approx(counts @ expected, rel=1e-4, abs=1e-6)


def test_decisions_made_during_a_revaluation_keep_their_costs():
    """A re-valuation runs outside the lock: a decision that arrives meanwhile (here, from
    inside the re-valuation) counts at the cost it was served with, once."""
    old, new = object(), object()
    table = {old: np.array([1.0, 0.5]), new: np.array([3.0, 0.25])}
    budget = SafetyBudget(0.02)
    probs = np.array([0.5, 0.5])
    for _ in range(4):
        budget.serve("A", table[old], probs, 1, 0, line="L", recost=table.__getitem__, posterior=old)

    def recost(post):
        if post is new:  # a concurrent decision on a new line of the same SKU
            budget.serve("A", np.array([7.0, 0.5]), probs, 1, 0, line="M",
                         recost=lambda _: np.array([7.0, 0.5]))  # fmt: skip
        return table[post]

    budget._skus["A"].lines["L"].recost = recost
    budget.revalue("A", new)
    # 4 decisions of L re-valued at 3.0, plus the one of M at 7.0 as served.
    assert budget.budget("A") == pytest.approx(4 * 3.0 + 7.0)
    assert budget.budget() == pytest.approx(4 * 3.0 + 7.0)


def test_the_service_revalues_in_the_background():
    old, new = object(), object()
    table = {old: np.array([1.0, 0.5]), new: np.array([-2.0, 0.5])}
    budget = SafetyBudget(0.02, background=True)
    probs = np.array([0.5, 0.5])
    release = threading.Event()

    def recost(post):
        if post is new:
            assert threading.current_thread().name.startswith("safe-start")
            release.wait(10)  # the request below is not held up by this
        return table[post]

    for _ in range(3):
        budget.serve("A", table[old], probs, 1, 0, line="L", recost=recost, posterior=old)
    assert budget.budget("A") == pytest.approx(3.0)
    # The decision that notices the new posterior is guarded with the budget as it stood.
    served, _, blocked = budget.serve("A", table[new], probs, 1, 0, line="L", recost=recost,
                                      posterior=new)  # fmt: skip
    assert (served, blocked) == (0, False)
    release.set()
    assert budget._pool is not None
    budget._pool.shutdown(wait=True)
    assert budget.revalued == 1
    assert budget.budget("A") == pytest.approx(4 * -2.0)


def test_list_prices_served_before_the_first_model_count_in_the_budget():
    """The promise is about all the engine's traffic: the reference prices it served while
    it had no model each earn α × list's profit, valued under the first posterior."""
    posterior = synthetic_posterior(n_draws=300, seed=3, spread=0.5)
    served = {"post": None}
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.3),))
    safety = SafetyBudget(0.05, confidence=0.9)
    policy = ThompsonPricePolicy(
        lambda: None if served["post"] is None else ("v", served["post"]), lambda: rules,
        epsilon=0.05, floor=0.01, seed=5, n_prices=13, safety=safety,
    )  # fmt: skip
    line = LineContext("default", "TEA-1", "tea", "USD", 1000, 400, quantity=2)
    for _ in range(100):
        assert policy.decide(line).reasons == ("no_demand_model",)
    assert safety.budget("TEA-1") == 0.0  # nothing to value them with yet
    served["post"] = posterior
    d = policy.decide(line)
    prices = np.arange(700, 1301, 50)
    profit = 2 * posterior.expected_profit("default", "TEA-1", prices / 1000,
                                           (prices - 400).astype(float), category="tea")  # fmt: skip
    costs = safety.costs(profit, posterior.decision_weights("default", "TEA-1"), 6)
    assert costs[6] > 0  # α x list's profit, in the worst 10 % of the posterior
    expected = 100 * costs[6] + costs[np.searchsorted(prices, d.price_minor)]
    assert safety.budget("TEA-1") == pytest.approx(expected, rel=1e-4)
    assert safety.budget() == pytest.approx(expected, rel=1e-4)


def test_the_joint_budget_affords_more_than_summed_tails_and_logs_exact_propensities():
    """Same posterior, same draws of the policy's generator: the joint budget blocks no
    more than the summed-tails one (its bound is tighter), and what it serves is logged
    with the probability it had."""
    gated = {}
    for kind in (SafetyBudget, JointSafetyBudget):
        policy, _, safety = _policy(0.02, kind=kind)
        lines = [LineContext(seg, "TEA-1", "tea", "USD", 1000, 400) for seg in ("default", "loyalty")]
        for t in range(1200):
            d = policy.decide(lines[t % 2])
            assert 0.0 < d.propensity <= 1.0
        gated[kind] = safety.gated
    assert gated[JointSafetyBudget] < gated[SafetyBudget]


def test_the_joint_budget_revalues_every_sku_under_a_new_posterior():
    first = synthetic_posterior(n_draws=300, seed=3, spread=0.5)
    second = synthetic_posterior(n_draws=300, seed=4, spread=0.2)
    served = {"post": first}
    rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.3, max_increase=0.3),))
    safety = JointSafetyBudget(0.05, confidence=0.9)
    policy = ThompsonPricePolicy(lambda: ("v", served["post"]), lambda: rules, epsilon=0.05,
                                 floor=0.01, seed=5, n_prices=13, safety=safety)  # fmt: skip
    lines = [LineContext("default", sku, "tea", "USD", 1000, 400) for sku in ("TEA-1", "TEA-2")]
    prices = np.arange(700, 1301, 50)
    counts = {sku: np.zeros(len(prices)) for sku in ("TEA-1", "TEA-2")}
    for t in range(300):
        line = lines[t % 2]
        counts[line.sku][np.searchsorted(prices, policy.decide(line).price_minor)] += 1
    served["post"] = second
    d = policy.decide(lines[0])
    counts["TEA-1"][np.searchsorted(prices, d.price_minor)] += 1
    total = np.zeros(second.n_draws)
    for sku in ("TEA-1", "TEA-2"):
        profit = second.expected_profit("default", sku, prices / 1000, (prices - 400).astype(float),
                                        category="tea")  # fmt: skip
        vector = safety.surplus(profit, 6) @ counts[sku]
        np.testing.assert_allclose(safety._draws[sku], vector, rtol=1e-4, atol=1e-6)
        total += vector
    np.testing.assert_allclose(safety._total_draws, total, rtol=1e-4, atol=1e-6)
    assert safety.revalued == 2  # the first posterior, then the second
