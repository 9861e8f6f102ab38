"""Guardrails and the Thompson-sampling policy: examples and properties (hypothesis)."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.guardrails import GuardrailError, GuardrailSet, ProductFacts, Rule
from pricing.policy import LineContext, ThompsonPricePolicy
from pricing.thompson import choice_probabilities, choose
from tests.factories import synthetic_posterior

FACTS = ProductFacts("TEA-1", "tea", 1000, 400)


def test_most_specific_scope_wins_for_bounds_and_tightest_for_caps():
    rules = GuardrailSet(rules=(
        Rule("global", None, max_discount=0.5, max_change=0.2),
        Rule("category", "tea", max_discount=0.3, max_change=0.05),
        Rule("sku", "TEA-1", max_discount=0.1, max_change=0.5),
    ))  # fmt: skip
    resolved = rules.resolve("TEA-1", "tea")
    assert resolved.values["max_discount"] == 0.1 and resolved.source["max_discount"] == "sku:TEA-1"
    assert resolved.values["max_change"] == 0.05 and resolved.source["max_change"] == "category:tea"
    assert rules.resolve("COF-1", "coffee").values["max_discount"] == 0.5


def test_bounds_name_the_binding_rules():
    rules = GuardrailSet(
        rules=(Rule("global", None, max_discount=0.3, max_increase=0.1, min_margin=1.0),)
    )
    low, high, binding = rules.bounds(FACTS)
    assert (low, high) == (800, 1100)
    assert binding == {"low": ["global.min_margin"], "high": ["global.max_increase"]}


def test_price_endings_and_ladder_size():
    rules = GuardrailSet(
        rules=(Rule("global", None, max_discount=0.5, max_increase=0.5, ending=99),)
    )
    prices, _ = rules.feasible_prices(FACTS, n_max=50)
    assert (prices % 100 == 99).all() and prices.min() >= 500 and prices.max() <= 1500
    step = GuardrailSet(rules=(Rule("global", None, max_discount=0.5, max_increase=0.5, step=1),))
    prices, _ = step.feasible_prices(FACTS, n_max=50)
    assert len(prices) == 50 and 1000 in prices and prices[0] == 500 and prices[-1] == 1500


@pytest.mark.parametrize(
    ("rules", "named"),
    [((Rule("global", None, floor=2000, ceiling=1000),), "global.floor"),
     ((Rule("global", None, max_discount=1.5),), "global.max_discount"),
     ((Rule("sku", None, floor=10),), "sku.target"),
     ((Rule("global", None, floor=-5),), "global.floor"),
     ((Rule("global", None), Rule("global", None)), "global")],
)  # fmt: skip
def test_invalid_rules_are_refused_naming_them(rules, named):
    with pytest.raises(GuardrailError) as info:
        GuardrailSet(rules=rules)
    assert named in info.value.rules


def test_an_empty_feasible_set_names_both_binding_rules():
    rules = GuardrailSet(
        rules=(Rule("global", None, floor=2000), Rule("sku", "TEA-1", ceiling=1500))
    )
    with pytest.raises(GuardrailError) as info:
        rules.check([FACTS])
    assert set(info.value.rules) == {"global.floor", "sku:TEA-1.ceiling"}


def test_choice_probabilities_are_exact():
    profit = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 5.0], [0.0, 4.0, 1.0]])
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    probs = choice_probabilities(profit, weights, epsilon=0.3)
    np.testing.assert_allclose(probs, 0.7 * np.array([0.2, 0.5, 0.3]) + 0.1)


def test_propensities_match_repeated_decisions():
    rng = np.random.default_rng(0)
    profit = rng.normal(size=(200, 6))
    weights = rng.dirichlet(np.ones(200))
    counts = np.zeros(6)
    for _ in range(20_000):
        choice = choose(profit, weights, 0.1, rng)
        counts[choice.index] += 1
    np.testing.assert_allclose(counts / counts.sum(), choice.probabilities, atol=0.01)


# ------------------------------------------------------------------ properties
fraction = st.none() | st.floats(0.0, 0.9)
rule_kwargs = st.fixed_dictionaries({
    "floor": st.none() | st.integers(100, 3000), "ceiling": st.none() | st.integers(100, 3000),
    "min_margin": st.none() | st.floats(0.0, 2.0), "max_discount": fraction, "max_increase": fraction,
    "max_change": st.none() | st.floats(0.01, 0.5), "ending": st.none() | st.integers(0, 99),
    "step": st.none() | st.integers(1, 50), "exclude": st.none() | st.booleans(),
    "segment_gap": st.none() | st.floats(1.0, 1.5),
})  # fmt: skip


@st.composite
def scenarios(draw):
    list_price = draw(st.integers(200, 2500))
    cost = draw(st.integers(0, list_price))
    anchor = draw(st.none() | st.integers(100, 3000))
    rules = []
    for scope, target in (("global", None), ("category", "tea"), ("sku", "TEA-1")):
        if draw(st.booleans()):
            kwargs = draw(rule_kwargs)
            if kwargs["floor"] and kwargs["ceiling"] and kwargs["floor"] > kwargs["ceiling"]:
                kwargs["floor"], kwargs["ceiling"] = kwargs["ceiling"], kwargs["floor"]
            rules.append(Rule(scope, target, **kwargs))
    return (
        ProductFacts("TEA-1", "tea", list_price, cost, anchor),
        GuardrailSet(rules=tuple(rules)),
        draw(st.booleans()),
    )


def violations(price, facts, rules):
    """Independent check of every rule's meaning against a served price."""
    v = rules.resolve(facts.sku, facts.category).values
    out = []
    if "floor" in v and price < v["floor"]:
        out.append("floor")
    if "ceiling" in v and price > v["ceiling"]:
        out.append("ceiling")
    if "min_margin" in v and price < facts.unit_cost * (1 + v["min_margin"]) - 1e-6:
        out.append("min_margin")
    if "max_discount" in v and price < facts.list_price * (1 - v["max_discount"]) - 1e-6:
        out.append("max_discount")
    if "max_increase" in v and price > facts.list_price * (1 + v["max_increase"]) + 1e-6:
        out.append("max_increase")
    if "max_increase" not in v and "ceiling" not in v and price > facts.list_price:
        out.append("above_list")
    anchor = facts.anchor_price
    if (
        "max_change" in v
        and anchor is not None
        and abs(price - anchor) > anchor * v["max_change"] + 1e-6
    ):
        out.append("max_change")
    if "segment_gap" in v and anchor is not None:
        # Within sqrt(gap) of the day's anchor either way: any two prices of the day,
        # whichever worker served them, are within the gap of each other.
        half = math.sqrt(v["segment_gap"])
        if price > anchor * half + 1e-6 or price * half < anchor - 1e-6:
            out.append("segment_gap")
    if "ending" in v and price % 100 != v["ending"]:
        out.append("ending")
    if "ending" not in v and "step" in v and price % v["step"] != 0:
        out.append("step")
    return out


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(0, 2**32 - 1))
def test_no_personalized_price_ever_violates_a_guardrail(scenario, seed):
    facts, rules, consent = scenario
    posterior = synthetic_posterior(n_draws=60, seed=seed % 1000, spread=1.0)
    policy = ThompsonPricePolicy(lambda: ("v1", posterior), lambda: rules, epsilon=0.1, seed=seed)
    line = LineContext("default", "TEA-1", "tea", "USD", facts.list_price, facts.unit_cost,
                       personalization_allowed=consent,
                       anchor_price_minor=facts.anchor_price)  # fmt: skip
    decision = policy.decide(line)
    assert 0 < decision.propensity <= 1
    chosen_by_model = any(r in ("thompson_sampling", "exploration") for r in decision.reasons)
    # Disclosure means what it says: personalized exactly when the model's choice differs
    # from what the non-personalized policy serves (the list price, no promotion); a fixed
    # rule or a fallback is the same for everyone, so never personalized.
    assert decision.personalized == (chosen_by_model and (
        decision.price_minor != facts.list_price or decision.promotion is not None))  # fmt: skip
    if chosen_by_model:
        assert violations(decision.price_minor, facts, rules) == []
        prices, _ = rules.feasible_prices(facts, n_max=policy.n_prices)
        ratio = prices / facts.list_price
        # The engine's own profit (float32, as the quote path computes it): a float64
        # recomputation can break a near-tie between two prices the other way.
        profit = posterior.expected_profit(
            "default", "TEA-1", ratio, (prices - facts.unit_cost).astype(float)
        )
        probs = choice_probabilities(profit, posterior.weights, policy.epsilon)
        assert math.isclose(probs.sum(), 1.0) and (probs > 0).all()
        assert math.isclose(decision.propensity, probs[list(prices).index(decision.price_minor)])
    elif decision.fallback:
        assert (
            "no_price_within_period_caps" in decision.reasons
            or decision.price_minor == facts.list_price
        )
    else:
        assert decision.price_minor == facts.list_price and decision.propensity == 1.0


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_the_kill_switch_gives_list_price_everywhere(scenario):
    facts, rules, _ = scenario
    killed = GuardrailSet(rules=rules.rules, kill_switch=True)
    policy = ThompsonPricePolicy(lambda: ("v1", synthetic_posterior()), lambda: killed, seed=1)
    line = LineContext(
        "default",
        "TEA-1",
        "tea",
        "USD",
        facts.list_price,
        facts.unit_cost,
        anchor_price_minor=facts.anchor_price,
    )
    decision = policy.decide(line)
    assert not decision.personalized and decision.propensity == 1.0
    if decision.fallback:
        # The day's caps leave no price: the statically allowed price nearest to list.
        static = killed.reference_price(replace(facts, anchor_price=None))
        assert decision.price_minor == (static if static is not None else facts.list_price)
        assert decision.reasons[0] == "no_price_within_period_caps"
    else:
        assert decision.price_minor == facts.list_price and decision.reasons == ("kill_switch",)


@settings(max_examples=200, deadline=None)
@given(
    scenarios(),
    st.integers(1, 500),
    st.sampled_from(["floor", "ceiling", "max_discount", "max_increase"]),
)
def test_a_tighter_guardrail_never_widens_the_range(scenario, amount, field):
    facts, rules, _ = scenario
    low, high, _ = rules.bounds(facts)
    base = next((r for r in rules.rules if r.scope == "sku"), Rule("sku", "TEA-1"))
    current = rules.resolve("TEA-1", "tea").values
    tighter = {
        "floor": {"floor": max(int(current.get("floor", 1)), low) + amount},
        "ceiling": {"ceiling": max(1, min(int(current.get("ceiling", 10**6)), high) - amount)},
        "max_discount": {
            "max_discount": max(0.0, float(current.get("max_discount", 0.99)) - amount / 1000)
        },
        # Unset, max_increase is effectively 0: prices never exceed list without a rule.
        "max_increase": {
            "max_increase": max(0.0, float(current.get("max_increase", 0.0)) - amount / 1000)
        },
    }[field]
    if "floor" in tighter and base.ceiling is not None and tighter["floor"] > base.ceiling:
        return
    if "ceiling" in tighter and base.floor is not None and tighter["ceiling"] < base.floor:
        return
    new_rule = Rule(**{**base.__dict__, **tighter})
    narrowed = GuardrailSet(rules=(*tuple(r for r in rules.rules if r.scope != "sku"), new_rule))
    new_low, new_high, _ = narrowed.bounds(facts)
    assert new_low >= low and new_high <= high
    old, _ = rules.feasible_prices(facts, n_max=10_000)
    new, _ = narrowed.feasible_prices(facts, n_max=10_000)
    assert set(new.tolist()) <= set(old.tolist())


@given(scenarios(), st.integers(2, 60), st.integers(1, 80))
@settings(max_examples=300, deadline=None)
def test_the_ladder_keeps_its_reference_index_and_paced_spread(scenario, n_max, paced):
    """The quote path reads the ladder's reference index and a paced line's spread from
    caches (a NumPy call there hands the GIL away): they are what it used to compute."""
    from pricing.guardrails import spread_indices as _spread
    from pricing.policy import _Ladder

    facts, rules, _ = scenario
    ladder = _Ladder.build(rules, facts, n_max)
    if ladder.reference is not None:
        assert ladder.reference_index == int(np.searchsorted(ladder.prices, ladder.reference))
        assert ladder.prices[ladder.reference_index] == ladder.reference
    n = len(ladder.prices)
    if n:
        expected = np.unique(np.linspace(0, n - 1, paced).round().astype(int))
        np.testing.assert_array_equal(_spread(n, paced), expected)
