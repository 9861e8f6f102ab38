"""Price policies: what price a quote line gets, and with what probability.

The service hands each line to a :class:`PricePolicy` and logs what it returns. Later
policies (Thompson sampling inside guardrails) replace :class:`ListPricePolicy` without
changing the service or the API contract.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from pricing.choices import ChoiceCache, quantize_rate
from pricing.guardrails import GuardrailSet, ProductFacts, spread_indices
from pricing.pacing import lp_mixture
from pricing.posterior import DemandPosterior
from pricing.promotions import Offer
from pricing.safe_start import JointSafetyBudget, SafetyBudget, tail_mean
from pricing.thompson import ThompsonChoice, explore, greedy_probabilities, sample

__all__ = [
    "LineContext",
    "ListPricePolicy",
    "PriceDecision",
    "PricePolicy",
    "ThompsonPricePolicy",
]

def _features_key(features: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in features.items()))


@dataclass(frozen=True, slots=True)
class LineContext:
    """Everything a policy may use to price one line.

    Attributes
    ----------
    segment : str
        Resolved customer segment.
    sku : str
        Product being priced.
    category : str
        Product category.
    currency : str
        ISO 4217 code of all money fields.
    list_price_minor : int
        List price in minor units.
    unit_cost_minor : int
        Unit cost in minor units.
    quantity : int
        Units in the line.
    personalization_allowed : bool
        False when the customer opted out or personalization is switched off.
    features : Mapping[str, object]
        Declared context features (never protected attributes).
    anchor_price_minor : int or None
        The SKU's daily anchor price, from which ``max_change`` and ``segment_gap`` are
        measured (minor units; see :class:`~pricing.guardrails.ProductFacts`).
    offers : tuple of Offer
        Eligible promotions within their limits; the policy may pick one (or none).
    """

    segment: str
    sku: str
    category: str
    currency: str
    list_price_minor: int
    unit_cost_minor: int
    quantity: int = 1
    personalization_allowed: bool = True
    features: Mapping[str, object] = field(default_factory=dict)
    anchor_price_minor: int | None = None
    offers: tuple[Offer, ...] = ()


@dataclass(frozen=True, slots=True)
class PriceDecision:
    """A policy's choice for one line.

    Attributes
    ----------
    price_minor : int
        Price offered, minor units.
    propensity : float
        Probability in (0, 1] that the policy would choose this price for this context.
    personalized : bool
        Whether the customer's data (segment, declared context) changed the line: its price
        or promotion differs from what the non-personalized policy serves (the list price,
        no promotion). A model choice that lands on the list price is not personalized.
    policy : str
        Name and version of the policy that decided.
    reasons : tuple of str
        Why this price (e.g. ``"list_price"``, or the guardrails that bound it).
    model_version : str or None
        Posterior snapshot used, if any.
    fallback : bool
        True when the policy could not decide and the safe default was served.
    candidates : int
        Size of the candidate set the (price, promotion) pair was chosen from.
    promotion : str or None
        Promotion offered with the price, if any.
    promotion_version : int or None
    discount_minor : int
        Promotion discount per unit (minor units); the customer pays price - discount.
    promotion_cost_minor : int
        Merchant's extra cost of the promotion for the line (free shipping).
    reserve_minor : int
        Budget the offer holds until its outcome: discount × quantity + cost.
    """

    price_minor: int
    propensity: float
    personalized: bool
    policy: str
    reasons: tuple[str, ...] = ()
    model_version: str | None = None
    fallback: bool = False
    candidates: int = 1
    promotion: str | None = None
    promotion_version: int | None = None
    discount_minor: int = 0
    promotion_cost_minor: int = 0
    reserve_minor: int = 0


class PricePolicy(Protocol):
    """Anything that prices a line and says how likely it was to choose that price."""

    def decide(self, line: LineContext) -> PriceDecision:
        """Return the decision for ``line``."""
        ...


class ListPricePolicy:
    """Everyone gets the list price, deterministically (propensity 1).

    Examples
    --------
    >>> line = LineContext("default", "SKU-1", "tea", "USD", 1299, 700)
    >>> ListPricePolicy().decide(line).price_minor
    1299
    """

    name = "list-price/1"

    def decide(self, line: LineContext) -> PriceDecision:
        """Return the list price with propensity 1."""
        return PriceDecision(
            price_minor=line.list_price_minor,
            propensity=1.0,
            personalized=False,
            policy=self.name,
            reasons=("list_price",),
        )


@dataclass(frozen=True)
class _Ladder:
    """A SKU's candidate prices under one rule set, with the arrays the hot path needs."""

    prices: NDArray[np.int64]
    binding: dict[str, list[str]]
    neg_log_ratio: NDArray[np.float32]
    half_margin: NDArray[np.float32]
    reference: int | None
    personalization_allowed: bool
    #: Position of ``reference`` in ``prices`` (0 when there is none), computed once: on
    #: the quote path a ``numpy.searchsorted`` hands the GIL to any busy thread of the
    #: worker and waits up to the switch interval to take it back.
    reference_index: int = 0

    @classmethod
    def build(cls, rules: GuardrailSet, facts: ProductFacts, n_max: int) -> _Ladder:
        prices, binding = rules.feasible_prices(facts, n_max=n_max)
        ratio = prices / facts.list_price if len(prices) else np.ones(0)
        nearest = int(np.argmin(np.abs(prices - facts.list_price))) if len(prices) else 0
        reference = int(prices[nearest]) if len(prices) else None
        return cls(
            prices, binding, (-np.log(ratio)).astype(np.float32),
            (0.5 * (prices - facts.unit_cost)).astype(np.float32), reference,
            rules.personalization_allowed(facts), nearest,
        )  # fmt: skip


def _personalized(line: LineContext, price: int, promotion: str | None) -> bool:
    """Whether the customer's data changed what the line gets.

    The non-personalized policy, with the same guardrails and without segment or context,
    serves the list price and no model-chosen promotion (what an opted-out customer gets):
    a line is personalized exactly when its price or promotion differs from that.
    """
    return price != line.list_price_minor or promotion is not None


@dataclass(frozen=True, slots=True)
class _JointCandidates:
    """A line's joint candidates (see :meth:`ThompsonPricePolicy._joint_candidates`)."""

    #: The ladder they were built from (checked on a hit: the slot holds its ``id``).
    ladder: _Ladder
    #: (option, prices, discounts) per option that kept any price.
    candidates: tuple[tuple[int, NDArray[np.int64], NDArray[np.int64]], ...]
    prices: NDArray[np.int64]
    discounts: NDArray[np.int64]
    #: Option of each candidate (0: no promotion, k: the line's k-th offer).
    option: NDArray[np.int64]
    #: Promotion cost to the merchant of each candidate (minor units).
    cost: NDArray[np.float64]
    #: Options whose offer is paced.
    paced: tuple[int, ...]
    #: Profit per conversion of each candidate (minor units).
    margin: NDArray[np.float64]
    #: What identifies the candidates in a distribution's cache key.
    signature: tuple[object, ...]


class ThompsonPricePolicy:
    """Thompson sampling on expected profit over the guardrail price ladder.

    Parameters
    ----------
    posterior : callable
        Returns ``(model_version, DemandPosterior)`` or None when no snapshot is published.
    guardrails : callable
        Returns the active :class:`~pricing.guardrails.GuardrailSet`.
    epsilon : float
        Share of exploration (pricing/thompson.py): how often the served candidate is not
        the Thompson choice itself.
    floor : float, optional
        The part of ``epsilon`` spread uniformly over the allowed candidates, so that each
        keeps a propensity of at least ``floor / n`` (``PRICING_MIN_PROPENSITY``); the rest
        goes to the ladder neighbours of the Thompson choice. None: all of ``epsilon`` is
        uniform (the classic ε-uniform mixture).
    n_prices : int
        Largest candidate ladder.
    seed : int, optional
        Seed of the policy's random generators: each thread that decides gets its own
        generator, spawned from this seed (a NumPy ``Generator`` is not thread-safe).
    safety : SafetyBudget, optional
        Safe start (:mod:`pricing.safe_start`): a line is decided by the engine only while
        its SKU's and the worker's budget of allowed loss against list prices can absorb
        any candidate the decision may serve; otherwise it gets the reference price
        (reason ``safe_start``). None: no such promise.
    paced_prices : int
        Most ladder prices offered with a budget-paced promotion (keeps the per-draw LP
        small: 500 draws x 51 candidates cost ~20 ms, x 13 about 1 ms).
    pacing_process : bool
        Re-solve paced lines' LPs in a child process instead of the background thread
        (:class:`pricing.choices.ChoiceCache`'s ``processes``): a serving worker's event
        loop then never waits for the GIL behind an LP. Off for simulations and notebooks.

    Notes
    -----
    Guardrails shape the candidates; the choice is never clamped afterwards, so the
    logged propensity is exactly the probability of the served price. Under the kill
    switch, without the customer's consent, or for an excluded SKU, the line gets the list
    price (propensity 1, not personalized). Without a posterior it gets the list price if
    the guardrails allow it, else the allowed price nearest to it, flagged ``fallback``.
    """

    name = "thompson/1"

    #: Lines' joint candidates kept (least recently used dropped; a few KB each).
    MAX_CANDIDATE_SLOTS = 8192

    def __init__(
        self,
        posterior: Callable[[], tuple[str, DemandPosterior] | None],
        guardrails: Callable[[], GuardrailSet],
        *,
        epsilon: float = 0.02,
        floor: float | None = None,
        n_prices: int = 50,
        seed: int | None = None,
        paced_prices: int = 12,
        safety: SafetyBudget | None = None,
        pacing_process: bool = False,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        if floor is not None and not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must lie in [0, 1], got {floor}")
        self._posterior = posterior
        self._guardrails = guardrails
        self.epsilon = epsilon
        #: The uniform part of ``epsilon`` (at most ``epsilon``).
        self.floor = epsilon if floor is None else min(floor, epsilon)
        self.n_prices = n_prices
        self.paced_prices = paced_prices
        self._seed = np.random.SeedSequence(seed)
        self._local = threading.local()
        self._spawn_lock = threading.Lock()
        #: Action distributions per line for the served posterior (pricing/choices.py).
        self.choices = ChoiceCache(processes=pacing_process)
        self.safety = safety
        #: Per greedy distribution (by identity, kept alive here): its served distribution
        #: and CDF, so a draw does not recompute them.
        self._served: dict[int, tuple[NDArray[np.float64], tuple[NDArray[np.float64], list[float]]]] = {}
        #: Safe start's c(a) per line for the served posterior (see pricing/safe_start.py).
        self._costs = ChoiceCache()
        # Ladders depend only on the rules and the product facts: cache them per rule set.
        self._ladder_rules: GuardrailSet | None = None
        self._ladders: dict[ProductFacts, _Ladder] = {}
        self._candidates: OrderedDict[tuple[object, ...], _JointCandidates] = OrderedDict()
        self._reserves: dict[tuple[object, ...], tuple[_Ladder, int]] = {}
        self._candidates_lock = threading.Lock()

    @property
    def _rng(self) -> np.random.Generator:
        """This thread's generator (created on first use from the policy's seed)."""
        rng: np.random.Generator | None = getattr(self._local, "rng", None)
        if rng is None:
            with self._spawn_lock:
                child = self._seed.spawn(1)[0]
            rng = self._local.rng = np.random.default_rng(child)
        return rng

    def _deterministic(
        self, price: int, reasons: tuple[str, ...], *, fallback: bool = False
    ) -> PriceDecision:
        return PriceDecision(price, 1.0, False, self.name, reasons, None, fallback, 1)

    def decide(self, line: LineContext) -> PriceDecision:
        """Choose the line's price; see the class notes for the non-personalized cases."""
        rules = self._guardrails()
        if rules is not self._ladder_rules:
            self._ladder_rules, self._ladders = rules, {}
        facts = ProductFacts(
            line.sku,
            line.category,
            line.list_price_minor,
            line.unit_cost_minor,
            line.anchor_price_minor,
        )
        ladder = self._ladders.get(facts)
        if ladder is None:
            if len(self._ladders) > 100_000:
                self._ladders.clear()
            ladder = self._ladders[facts] = _Ladder.build(rules, facts, self.n_prices)
        prices, binding = ladder.prices, ladder.binding
        reference = ladder.reference
        if reference is None:
            # Only the per-period caps (change, segment gap) can empty a validated set:
            # serve the statically allowed price nearest to list, and say so.
            static = rules.reference_price(
                replace(facts, anchor_price=None)
            )
            price = static if static is not None else line.list_price_minor
            return self._deterministic(
                price,
                ("no_price_within_period_caps", *binding["low"], *binding["high"]),
                fallback=True,
            )
        # Not personalized: the list price itself, which merchandisers set for everyone.
        if rules.kill_switch:
            return self._deterministic(line.list_price_minor, ("kill_switch",))
        if not line.personalization_allowed:
            return self._deterministic(line.list_price_minor, ("customer_opted_out",))
        if not ladder.personalization_allowed:
            return self._deterministic(line.list_price_minor, ("excluded_from_personalization",))
        served = self._posterior()
        if served is None:
            if self.safety is not None:
                self._credit_reference(line, reference)
            return self._deterministic(reference, ("no_demand_model",), fallback=True)
        version, posterior = served
        if line.offers:
            return self._decide_joint(line, ladder, version, posterior)
        key = ("line", line.segment, line.sku, line.category, line.list_price_minor,
               line.unit_cost_minor, prices.tobytes(), _features_key(line.features))  # fmt: skip

        weights = posterior.decision_weights(line.segment, line.sku)

        def profit_under(post: DemandPosterior) -> NDArray[np.floating[Any]]:
            """Expected profit per draw and ladder price, shape (D, n), under ``post``."""
            offset = post.context_offset(line.features) if line.features else None
            fitted = post.fitted_indices(line.segment, line.sku)
            if fitted is not None:
                half_shift = None if offset is None else (0.5 * offset).astype(np.float32)
                out: NDArray[np.floating[Any]] = post._profit(
                    *fitted, ladder.neg_log_ratio, ladder.half_margin, half_shift
                )
                return out
            return post.expected_profit(
                line.segment, line.sku, prices / line.list_price_minor,
                (prices - line.unit_cost_minor).astype(float), category=line.category,
                offset=offset,
            )  # fmt: skip

        greedy = self.choices.get(
            posterior, key, lambda: greedy_probabilities(profit_under(posterior), weights)
        )
        reference_index = ladder.reference_index
        choice, blocked = self._draw(
            line.sku, greedy, None, reference_index, posterior, (key, line.quantity),
            lambda post: profit_under(post) * float(line.quantity), line.segment,
        )  # fmt: skip
        if blocked:
            return self._safe_start(reference, choice, version, len(prices))
        price = int(prices[choice.index])
        reasons = ["thompson_sampling" if not choice.explored else "exploration"]
        if price == prices[0]:
            reasons += binding["low"]
        if price == prices[-1]:
            reasons += binding["high"]
        return PriceDecision(
            price, choice.propensity, _personalized(line, price, None), self.name,
            tuple(reasons), version, False, len(prices),
        )  # fmt: skip

    def _served_of(
        self, greedy: NDArray[np.float64], groups: NDArray[np.int64] | None
    ) -> tuple[NDArray[np.float64], list[float]]:
        """The served distribution and the CDF of ``greedy`` (a cached line's, as a list
        for :func:`pricing.thompson.sample`'s bisection), once each."""
        hit = self._served.get(id(greedy))
        if hit is not None and hit[0] is greedy:
            return hit[1]
        value = (explore(greedy, self.epsilon, floor=self.floor, groups=groups),
                 np.cumsum(greedy).tolist())  # fmt: skip
        if len(self._served) > 2 * self.choices.max_lines:
            self._served.clear()
        self._served[id(greedy)] = (greedy, value)
        return value

    # ------------------------------------------------------------------ safe start
    def _draw(
        self, sku: str, greedy: NDArray[np.float64], groups: NDArray[np.int64] | None,
        reference_index: int, posterior: DemandPosterior, key: Hashable,
        profit_under: Callable[[DemandPosterior], NDArray[np.floating[Any]]], segment: str,
    ) -> tuple[ThompsonChoice, bool]:  # fmt: skip
        """One draw with exploration, then safe start's guard when on: (the choice served,
        whether the draw was blocked and the reference price served instead).

        ``profit_under(posterior)`` is the line's expected profit per draw and candidate
        (quantity included), shape (D, n): safe start's c(a) come from it, once per line
        and posterior, and the budget re-values the line's past decisions with it when
        another posterior is served (pricing/safe_start.py)."""
        choice = sample(greedy, self.epsilon, self._rng, floor=self.floor, groups=groups,
                        served=self._served_of(greedy, groups))  # fmt: skip
        safety = self.safety
        if safety is None:
            return choice, False

        def recost(post: DemandPosterior) -> NDArray[np.float64]:
            # Uncached: a re-valuation (maybe on the budget's own thread) must not swap
            # the cache below to another posterior.
            return safety.costs(profit_under(post), post.decision_weights(segment, sku),
                                reference_index)  # fmt: skip

        costs = self._costs.get(posterior, key, lambda: recost(posterior))
        if isinstance(safety, JointSafetyBudget):

            def resurplus(post: DemandPosterior) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
                return (safety.surplus(profit_under(post), reference_index),
                        post.decision_weights(segment, sku))  # fmt: skip

            surplus, weights = resurplus(posterior)
            index, propensity, blocked = safety.serve(
                sku, costs, choice.probabilities, reference_index, choice.index, line=key,
                recost=recost, posterior=posterior, resurplus=resurplus, surplus=surplus,
                weights=weights,
            )  # fmt: skip
        else:
            index, propensity, blocked = safety.serve(
                sku, costs, choice.probabilities, reference_index, choice.index,
                line=key, recost=recost, posterior=posterior,
            )  # fmt: skip
        return ThompsonChoice(index, propensity, choice.probabilities, choice.explored), blocked

    def _credit_reference(self, line: LineContext, reference: int) -> None:
        """Count a reference price served before any demand model in safe start's budget:
        what list prices earn on that traffic is part of the promise, so each such decision
        adds α × list's profit, valued once a posterior exists (pricing/safe_start.py)."""
        safety = self.safety
        assert safety is not None
        q = float(line.quantity)
        ratio = np.array([reference / line.list_price_minor])
        margin = np.array([float(reference - line.unit_cost_minor)])

        def resurplus(post: DemandPosterior) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
            offset = post.context_offset(line.features) if line.features else None
            profit = post.expected_profit(line.segment, line.sku, ratio, margin,
                                          category=line.category, offset=offset)  # fmt: skip
            return safety.surplus(profit * q, 0), post.decision_weights(line.segment, line.sku)

        def recost(post: DemandPosterior) -> NDArray[np.float64]:
            return tail_mean(*resurplus(post), 1.0 - safety.confidence)

        key = ("reference", line.segment, line.sku, line.category, line.list_price_minor,
               line.unit_cost_minor, reference, _features_key(line.features), line.quantity)  # fmt: skip
        if isinstance(safety, JointSafetyBudget):
            safety.record(line.sku, key, recost, 1, 0, resurplus)
        else:
            safety.record(line.sku, key, recost, 1, 0)

    def _safe_start(
        self, reference: int, choice: ThompsonChoice, version: str, candidates: int
    ) -> PriceDecision:
        """The reference price a blocked draw serves (not personalized; exact propensity)."""
        return PriceDecision(reference, choice.propensity, False, self.name, ("safe_start",),
                             version, False, candidates)  # fmt: skip

    def _joint_candidates(self, line: LineContext, ladder: _Ladder) -> _JointCandidates:
        """The (price, promotion or none) candidates of a line, kept per ladder, quantity,
        unit cost and offers: they depend on nothing else, and building them (a dozen
        small NumPy calls and the arrays' bytes for the distribution's key) was two thirds
        of a joint decision's time on the quote path (py-spy)."""
        q = line.quantity
        offers = tuple(
            (o.promotion.key, o.promotion.version, o.promotion.kind, o.promotion.percent_off,
             o.promotion.amount_off_minor, o.promotion.cost_minor,
             # A budget that covers the line's largest reservation keeps every price: as None.
             None if o.max_reserve_minor is None
             or o.max_reserve_minor >= self._largest_reserve(ladder, o, q) else o.max_reserve_minor,
             o.pacing_rate_minor is not None)
            for o in line.offers
        )  # fmt: skip
        slot = (id(ladder), q, line.unit_cost_minor, offers)
        cache = self._candidates
        with self._candidates_lock:  # threads of a simulation may share the policy
            hit = cache.get(slot)
            if hit is not None and hit.ladder is ladder:
                cache.move_to_end(slot)
                return hit
        options: list[Offer | None] = [None, *line.offers]
        candidates: list[tuple[int, NDArray[np.int64], NDArray[np.int64]]] = []
        for o, offer in enumerate(options):
            prices = ladder.prices
            if offer is None:
                discounts = np.zeros(len(prices), dtype=np.int64)
            else:
                discounts = offer.promotion.discounts(prices)
                keep = prices - discounts > 0
                if offer.max_reserve_minor is not None:
                    keep &= discounts * q + offer.promotion.cost_minor <= offer.max_reserve_minor
                prices, discounts = prices[keep], discounts[keep]
                if offer.pacing_rate_minor is not None and len(prices) > self.paced_prices:
                    # The pacing LP's pair search is quadratic in its paying candidates: a
                    # paced offer uses an evenly spread subset of the ladder (ends kept).
                    pick = spread_indices(len(prices), self.paced_prices)
                    prices, discounts = prices[pick], discounts[pick]
                if not len(prices):
                    continue
            candidates.append((o, prices, discounts))
        prices = np.concatenate([c[1] for c in candidates])
        discounts = np.concatenate([c[2] for c in candidates])
        option = np.concatenate([np.full(len(c[1]), c[0], dtype=np.int64) for c in candidates])
        option_cost = np.array(
            [0.0 if x is None else float(x.promotion.cost_minor) for x in options]
        )
        cost = option_cost[option]
        paced = tuple(
            o for o, offer in enumerate(options)
            if offer is not None and offer.pacing_rate_minor is not None
        )  # fmt: skip
        margin = (prices - discounts - line.unit_cost_minor) * float(q) - cost
        for array in (prices, discounts, option, cost, margin):
            array.flags.writeable = False  # shared by every quote of the slot
        signature = (prices.tobytes(), discounts.tobytes(), option.tobytes(),
                     tuple((x.promotion.key, x.promotion.version, x.promotion.cost_minor)
                           for x in line.offers), paced)  # fmt: skip
        built = _JointCandidates(ladder, tuple(candidates), prices, discounts, option, cost,
                                 paced, margin, signature)  # fmt: skip
        with self._candidates_lock:
            cache[slot] = built
            cache.move_to_end(slot)
            while len(cache) > self.MAX_CANDIDATE_SLOTS:  # a few KB each
                cache.popitem(last=False)
        return built

    def _largest_reserve(self, ladder: _Ladder, offer: Offer, quantity: int) -> int:
        """The most budget any of the ladder's prices would reserve under ``offer``."""
        promotion = offer.promotion
        slot = (id(ladder), promotion.key, promotion.version, promotion.kind,
                promotion.percent_off, promotion.amount_off_minor, promotion.cost_minor)  # fmt: skip
        hit = self._reserves.get(slot)
        if hit is None or hit[0] is not ladder:
            if len(self._reserves) >= self.MAX_CANDIDATE_SLOTS:
                self._reserves.clear()
            discounts = promotion.discounts(ladder.prices)
            hit = self._reserves[slot] = (ladder, int(discounts.max()) if len(discounts) else 0)
        return hit[1] * quantity + promotion.cost_minor

    def _decide_joint(
        self, line: LineContext, ladder: _Ladder, version: str, posterior: DemandPosterior
    ) -> PriceDecision:
        """Thompson sampling over (price, promotion or none) pairs; LP-paced when budgets bind.

        Candidates are the guardrail ladder without a promotion, and for each offer the
        ladder prices whose reservation fits the offer's free budget. Reward per draw is
        the line's expected profit net of discount and promotion cost; a paced offer's
        expected spend enters the per-draw LP of :mod:`pricing.pacing`.
        """
        q = line.quantity
        options: list[Offer | None] = [None, *line.offers]
        built = self._joint_candidates(line, ladder)
        candidates, prices, discounts, option = built.candidates, built.prices, built.discounts, built.option
        cost, paced, margin = built.cost, built.paced, built.margin
        key = ("joint", line.segment, line.sku, line.category, line.list_price_minor,
               line.unit_cost_minor, q, _features_key(line.features), built.signature)  # fmt: skip

        def reward_under(post: DemandPosterior) -> NDArray[np.float64]:
            """Conversion probability per draw and candidate, shape (D, n), under ``post``."""
            offset = post.context_offset(line.features) if line.features else None
            fitted = post.fitted_indices(line.segment, line.sku)
            columns = []
            for o, p_o, d_o in candidates:
                ratio = (p_o - d_o) / line.list_price_minor
                shift = offset
                offer = options[o]
                if offer is not None:
                    lift = post.promotion_lift(offer.promotion.key)
                    shift = lift if shift is None else shift + lift
                if fitted is not None:
                    half_shift = None if shift is None else (0.5 * shift).astype(np.float32)
                    columns.append(post._profit(
                        *fitted, (-np.log(ratio)).astype(np.float32),
                        np.full(len(p_o), 0.5, dtype=np.float32), half_shift,
                    ).astype(np.float64))  # fmt: skip
                else:
                    columns.append(post.conversion_probability(
                        line.segment, line.sku, ratio, category=line.category, offset=shift
                    ))  # fmt: skip
            return np.concatenate(columns, axis=1)

        def reward() -> NDArray[np.float64]:
            return reward_under(posterior)

        weights = posterior.decision_weights(line.segment, line.sku)
        reference = ladder.reference
        assert reference is not None  # decide() returned before for an empty ladder
        reference_index = ladder.reference_index  # option 0: no offer
        if paced:

            def solve(rates: NDArray[np.float64]) -> NDArray[np.float64]:
                p = reward()
                spend = np.zeros((*p.shape, len(paced)))
                for m, o in enumerate(paced):
                    cols = option == o
                    spend[:, cols, m] = p[:, cols] * (discounts[cols] * q + cost[cols])[None, :]
                # Off the worker's GIL when re-solved in the background (pricing/choices.py).
                mixtures = self.choices.heavy(lp_mixture, p * margin[None, :], spend, rates)
                greedy = weights @ mixtures
                out: NDArray[np.float64] = greedy / greedy.sum()
                return out

            rates = np.array(
                [quantize_rate(float(x.pacing_rate_minor)) for x in options
                 if x is not None and x.pacing_rate_minor is not None],
                dtype=np.float64,
            )  # fmt: skip
            greedy = self.choices.get_paced(posterior, key, rates, solve)
            how = "lp_pacing"
        else:
            greedy = self.choices.get(
                posterior, key,
                lambda: greedy_probabilities(reward() * margin[None, :], weights),
            )  # fmt: skip
            how = "thompson_sampling"
        choice, blocked = self._draw(
            line.sku, greedy, option, reference_index, posterior, key,
            lambda post: reward_under(post) * margin[None, :], line.segment,
        )  # fmt: skip
        if blocked:
            return self._safe_start(reference, choice, version, len(prices))
        index, propensity, explored = choice.index, choice.propensity, choice.explored
        price = int(prices[index])
        chosen = options[int(option[index])]
        if chosen is None:  # "lp_pacing" names how an offer was paced: only lines carrying one
            how = "thompson_sampling"
        reasons = [how if not explored else "exploration"]
        if price == ladder.prices[0]:
            reasons += ladder.binding["low"]
        if price == ladder.prices[-1]:
            reasons += ladder.binding["high"]
        if chosen is None:
            return PriceDecision(
                price, propensity, _personalized(line, price, None), self.name, tuple(reasons),
                version, False, len(prices),
            )  # fmt: skip
        promo = chosen.promotion
        discount = int(discounts[index])
        reasons.append(f"promotion:{promo.key}")
        return PriceDecision(
            price, propensity, _personalized(line, price, promo.key), self.name, tuple(reasons),
            version, False, len(prices), promo.key, promo.version, discount, promo.cost_minor,
            chosen.reserve_minor(discount, q),
        )  # fmt: skip
