"""A seeded market simulator for joint price × promotion benchmarks.

The simulator is the ground truth that a pricing policy is scored against. It knows, for
every customer segment and SKU, the true probability that a visitor buys at a given price
with a given promotion, and so it can say both what a policy earned on a stream of
visitors and what it *would* have earned in expectation, and what the best fixed choice
from the candidate set (the oracle) earns.

Demand follows the engine's own model form (:mod:`pricing.demand`)::

    P(buy | s, j, p, k, x) = sigmoid(a_seg[s] + a_sku[j] − e[s, c(j)] · log(p_eff / list_j)
                                     + lift[k] + segment_lift[s, k] + offset[x])

with ``p_eff = p − discount_k(p)`` the price the customer pays, ``e = exp(log_e) > 0``
the elasticity of segment ``s`` in the SKU's category ``c(j)``, and no lift for "no
promotion". The per-segment lift is zero by default (the engine's model has none); set
it to test the engine under a misspecified model. ``x`` is the visitor's request context,
a combination of levels of categorical features (device, traffic source, ...), and
``offset[x]`` the sum of its levels' effects (the engine's ``x·d``); a market without
context features has the single context 0 with offset 0.

Profit of one visitor, in integer minor units, is

    (price − discount − unit cost − promotion cost) if the visitor buys, else 0,

where the promotion cost is the free-shipping cost, borne only on a purchase.

Candidate actions
-----------------
Each SKU has the same number of candidate prices, ``round(list × f)`` for every fraction
``f`` of :attr:`Market.ladder`, and every price may be served with no promotion or with
any one promotion (eligibility is "everyone, every SKU"). Action ``a`` of a SKU is the
pair (price index ``a % n_prices``, option ``a // n_prices``), option 0 meaning no
promotion and option ``k + 1`` promotion ``k``.

Coupling
--------
:meth:`Market.visitors` and :meth:`Market.purchase_draws` come from independent streams
of the same seed. A visitor buys when its uniform draw ``u`` is below the purchase
probability of the action served, so two policies that serve the same action to the same
visitor see the same outcome, and their difference in profit is due to their choices only.

The module needs NumPy and the standard library only (no SciPy, PyMC or :mod:`pricing`),
so benchmark peers can rebuild a market from :meth:`Market.to_dict` in their own
environment.

Examples
--------
>>> market = Market.random(n_segments=2, n_skus=3, n_categories=1, n_promotions=2, seed=7)
>>> market.n_actions  # 13 prices x (no promotion + 2 promotions)
39
>>> segment, sku = market.visitors(5, seed=1)
>>> s, j = int(segment[0]), int(sku[0])
>>> best = market.oracle_action(s, j)
>>> float(market.expected_profit(s, j, best)) == market.oracle_expected_profit(s, j)
True
>>> bool((market.expected_profit_table[s, j] <= market.oracle_expected_profit(s, j)).all())
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CONTEXT_CATALOGUE",
    "DEFAULT_LADDER",
    "FAMILIES",
    "KINDS",
    "REFERENCE_GAIN",
    "REFERENCE_LOSS",
    "ContextFeatureSpec",
    "Drift",
    "Market",
    "PromotionSpec",
    "checkpoints",
    "stream_digest",
    "summarize",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

KINDS = ("percent_off", "amount_off", "free_shipping")
#: Candidate prices as fractions of list price: 0.70, 0.75, ..., 1.30 (13 steps).
#: Demand families of :class:`Market` (see its ``family``).
FAMILIES = ("logistic", "probit", "linear", "exponential", "interaction", "reference")
#: Reference-price family: a price above the last one seen in the cell costs this many
#: elasticities per unit of log ratio on top of the price effect (a loss) ...
REFERENCE_LOSS = 1.0
#: ... and a price below it gains this many (losses loom larger than gains).
REFERENCE_GAIN = 0.5
_erf = np.vectorize(math.erf, otypes=[np.float64])

DEFAULT_LADDER: tuple[float, ...] = tuple(round(0.7 + 0.05 * i, 10) for i in range(13))
_FORMAT = 1
#: Features that :meth:`Market.random` draws from, in order: name and levels (reference first).
CONTEXT_CATALOGUE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("device", ("desktop", "mobile", "tablet")),
    ("traffic_source", ("direct", "search", "email")),
    ("returning", ("no", "yes")),
)


@dataclass(frozen=True)
class PromotionSpec:
    """What a promotion gives and costs (eligibility: every segment and SKU).

    Attributes
    ----------
    key : str
        Identifier.
    kind : {"percent_off", "amount_off", "free_shipping"}
    percent_off : float
        Percentage off the price, in (0, 100], for ``percent_off`` (at most two decimals:
        12.5 is 12.5 %). The discount is rounded half up to a minor unit.
    amount_off_minor : int
        Discount per unit in minor units for ``amount_off``.
    shipping_cost_minor : int
        Merchant's cost per purchase for ``free_shipping`` (minor units).
    """

    key: str
    kind: str
    percent_off: float = 0.0
    amount_off_minor: int = 0
    shipping_cost_minor: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"promotion {self.key!r}: kind must be one of {KINDS}")
        if self.kind == "percent_off":
            if not 0.0 < self.percent_off <= 100.0:
                raise ValueError(f"promotion {self.key!r}: percent_off must lie in (0, 100]")
            if abs(self.percent_off * 100.0 - round(self.percent_off * 100.0)) > 1e-6:
                raise ValueError(f"promotion {self.key!r}: percent_off has more than 2 decimals")
        if self.kind == "amount_off" and self.amount_off_minor <= 0:
            raise ValueError(f"promotion {self.key!r}: amount_off_minor must be positive")
        if self.kind == "free_shipping" and self.shipping_cost_minor < 0:
            raise ValueError(f"promotion {self.key!r}: shipping_cost_minor must be >= 0")

    @property
    def basis_points(self) -> int:
        """``percent_off`` in hundredths of a percent (1,000 = 10 %); 0 for other kinds."""
        return round(self.percent_off * 100.0) if self.kind == "percent_off" else 0

    def discounts(self, price_minor: ArrayLike) -> IntArray:
        """Discount per unit at each price, minor units, same shape as ``price_minor``.

        Percent discounts round half up (exact integer arithmetic); no discount exceeds
        the price.
        """
        price = np.asarray(price_minor, dtype=np.int64)
        if self.kind == "percent_off":
            # round half up of price * bp / 10_000, in integers: floor((2 p bp + 10^4) / (2 10^4))
            cut = (2 * price * self.basis_points + 10_000) // 20_000
        elif self.kind == "amount_off":
            cut = np.full_like(price, self.amount_off_minor)
        else:
            cut = np.zeros_like(price)
        out: IntArray = np.minimum(cut, price)
        return out

    def discount_minor(self, price_minor: int) -> int:
        """Discount per unit at one price, minor units."""
        return int(self.discounts(price_minor))

    @property
    def cost_minor(self) -> int:
        """Merchant's cost per purchase beyond the discount (free shipping), minor units."""
        return self.shipping_cost_minor if self.kind == "free_shipping" else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` reverses it."""
        return {
            "key": self.key,
            "kind": self.kind,
            "percent_off": float(self.percent_off),
            "amount_off_minor": int(self.amount_off_minor),
            "shipping_cost_minor": int(self.shipping_cost_minor),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromotionSpec:
        """Read what :meth:`to_dict` wrote."""
        return cls(
            key=str(data["key"]),
            kind=str(data["kind"]),
            percent_off=float(data.get("percent_off", 0.0)),
            amount_off_minor=int(data.get("amount_off_minor", 0)),
            shipping_cost_minor=int(data.get("shipping_cost_minor", 0)),
        )


@dataclass(frozen=True)
class ContextFeatureSpec:
    """A categorical request-context feature and its true effect on demand.

    Visitors carry one level of every feature (drawn independently by :attr:`mix`); the
    purchase logit moves by the level's :attr:`effect`, the same for every segment, SKU
    and price (the engine's ``x·d`` term). Features are categorical so that the engine's
    cells, which group decisions by context, stay finite.

    Attributes
    ----------
    name : str
        Key in the quote's ``context`` (an identifier).
    levels : tuple of str
        At least two levels; the first is the reference (effect 0).
    mix : tuple of float
        Probability of each level among visitors (sums to 1).
    effect : tuple of float
        Logit shift of each level; ``effect[0]`` must be 0.
    """

    name: str
    levels: tuple[str, ...]
    mix: tuple[float, ...]
    effect: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.levels)
        if not self.name.isidentifier():
            raise ValueError(f"context feature {self.name!r}: name must be an identifier")
        if n < 2 or len(set(self.levels)) != n:
            raise ValueError(f"context feature {self.name!r}: needs at least two distinct levels")
        if len(self.mix) != n or len(self.effect) != n:
            raise ValueError(
                f"context feature {self.name!r}: mix and effect need one entry per level"
            )
        if min(self.mix) < 0 or abs(sum(self.mix) - 1.0) > 1e-9:
            raise ValueError(
                f"context feature {self.name!r}: mix must be non-negative and sum to 1"
            )
        if self.effect[0] != 0.0 or not all(np.isfinite(self.effect)):
            raise ValueError(f"context feature {self.name!r}: effects must be finite, the first 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` reverses it."""
        return {
            "name": self.name,
            "levels": list(self.levels),
            "mix": [float(m) for m in self.mix],
            "effect": [float(e) for e in self.effect],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextFeatureSpec:
        """Read what :meth:`to_dict` wrote."""
        return cls(
            name=str(data["name"]),
            levels=tuple(str(v) for v in data["levels"]),
            mix=tuple(float(m) for m in data["mix"]),
            effect=tuple(float(e) for e in data["effect"]),
        )


def _float_array(values: Any, shape: tuple[int, ...], name: str) -> FloatArray:
    out = np.array(values, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"market: {name} has shape {out.shape}, expected {shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"market: {name} must be finite")
    return out


def _int_array(values: Any, shape: tuple[int, ...], name: str) -> IntArray:
    out = np.array(values, dtype=np.int64)
    if out.shape != shape:
        raise ValueError(f"market: {name} has shape {out.shape}, expected {shape}")
    return out


@dataclass(frozen=True, eq=False)
class Market:
    """Ground truth of a simulated market: who arrives, what they buy, what it earns.

    S segments, J SKUs, C categories, K promotions, P candidate prices per SKU and
    A = P × (K + 1) candidate actions per SKU. Money is integer minor units of
    :attr:`currency`; probabilities and lifts are plain floats.

    Attributes
    ----------
    segments : tuple of str, length S
    skus : tuple of str, length J
    categories : tuple of str, length C
    sku_category : ndarray of int, shape (J,)
        Category index of each SKU.
    list_price_minor : ndarray of int, shape (J,)
        List price (the reference price of the demand model), minor units.
    unit_cost_minor : ndarray of int, shape (J,)
        Cost of one unit, minor units.
    segment_mix : ndarray, shape (S,)
        Probability that a visitor belongs to each segment (sums to 1).
    sku_mix : ndarray, shape (J,)
        Probability that a visitor looks at each SKU (sums to 1), independent of segment.
    a_seg : ndarray, shape (S,)
        Segment intercepts (logit scale).
    a_sku : ndarray, shape (J,)
        SKU intercepts (logit scale): P(buy) at list price without promotion is
        ``sigmoid(a_seg[s] + a_sku[j])``.
    log_e : ndarray, shape (S, C)
        log elasticity; the logit falls by ``exp(log_e[s, c])`` per unit of log price ratio.
    promotions : tuple of PromotionSpec, length K
    lift : ndarray, shape (K,)
        Framing lift of each promotion on the logit scale, beyond its price effect.
    segment_lift : ndarray, shape (S, K)
        Extra lift per segment (0 in the engine's model).
    ladder : tuple of float, length P
        Candidate prices as strictly increasing fractions of list price.
    currency : str
        ISO 4217 code of every money field.
    context_features : tuple of ContextFeatureSpec, length F
        Request-context features; their level combinations are the X contexts, indexed in
        mixed radix with the first feature slowest (X = 1 when F = 0).
    family : str
        Shape of demand in price (:data:`FAMILIES`). ``logistic`` is the engine's own model
        form; the others are not, so that the engine meets demand it does not describe
        exactly. All share, at list price and without promotion, the same conversion
        ``p0 = sigmoid(a_seg + a_sku + context)`` and the same elasticity
        ``e = exp(log_e)`` of the logit; promotions keep their lift on the logit of p0:

        - ``logistic``: ``sigmoid(logit(p0) - e · log r)``;
        - ``probit``: ``Φ((logit(p0) - e · log r) / 1.7)``, thinner tails;
        - ``linear``: ``p0 · (1 - e (1 - p0) (r - 1))``, clipped to [0.001, 0.999]: linear in
          price with the logistic's slope at list, a choke price above it;
        - ``exponential``: ``p0 · exp(-e (1 - p0) (r - 1))``, capped at 0.999: constant
          semi-elasticity, steeper discounts than the logistic;
        - ``interaction``: the logistic, with the price response of each context level
          scaled by ``1 ± 0.4`` (an undeclared context × price interaction; the engine's
          model has additive context effects only). Without context features: logistic.
        - ``reference``: customers compare with the last price they saw. The logistic,
          minus ``e · (L · max(d, 0) + G · min(d, 0))`` on the logit, with
          ``d = log(r / r_ref)``, ``r_ref`` the effective price ratio served to the
          previous visitor of the same (context, segment, SKU) cell (1, list price, for
          the first), ``L =`` :data:`REFERENCE_LOSS` and ``G =`` :data:`REFERENCE_GAIN`:
          a rise from the last price loses more demand than a cut of the same size wins.
          Demand depends on the path of prices served, so only :meth:`play` and
          :meth:`stream_probability`, which walk a stream in order, see the effect; the
          tables, :meth:`expected_profit` and the oracle are the steady state of a
          constant price (``r = r_ref``), the logistic. With losses weighed more than
          gains, a constant price is the best long-run policy (Popescu & Wu 2007,
          "Dynamic pricing strategies with reference effects"), so the oracle stays each
          cell's best constant action.

        ``r`` is the effective price over list price.

    Tables indexed by context have a leading axis of length X; those without it (e.g.
    :attr:`probability_table`) are for context 0, every feature at its reference level,
    which is the whole market when there are no context features.
    """

    segments: tuple[str, ...]
    skus: tuple[str, ...]
    categories: tuple[str, ...]
    sku_category: IntArray
    list_price_minor: IntArray
    unit_cost_minor: IntArray
    segment_mix: FloatArray
    sku_mix: FloatArray
    a_seg: FloatArray
    a_sku: FloatArray
    log_e: FloatArray
    promotions: tuple[PromotionSpec, ...]
    lift: FloatArray
    segment_lift: FloatArray
    ladder: tuple[float, ...] = DEFAULT_LADDER
    currency: str = "USD"
    context_features: tuple[ContextFeatureSpec, ...] = ()
    family: str = "logistic"

    def __post_init__(self) -> None:
        s, j, c, k = len(self.segments), len(self.skus), len(self.categories), len(self.promotions)
        if not (s and j and c):
            raise ValueError("market: needs at least one segment, SKU and category")
        for name, labels in (
            ("segments", self.segments),
            ("skus", self.skus),
            ("categories", self.categories),
            ("promotions", tuple(p.key for p in self.promotions)),
            ("context features", tuple(f.name for f in self.context_features)),
        ):
            if len(set(labels)) != len(labels):
                raise ValueError(f"market: {name} must be unique")
        set_ = object.__setattr__  # frozen: normalise the array fields once, here
        set_(self, "sku_category", _int_array(self.sku_category, (j,), "sku_category"))
        set_(self, "list_price_minor", _int_array(self.list_price_minor, (j,), "list_price_minor"))
        set_(self, "unit_cost_minor", _int_array(self.unit_cost_minor, (j,), "unit_cost_minor"))
        set_(self, "segment_mix", _float_array(self.segment_mix, (s,), "segment_mix"))
        set_(self, "sku_mix", _float_array(self.sku_mix, (j,), "sku_mix"))
        set_(self, "a_seg", _float_array(self.a_seg, (s,), "a_seg"))
        set_(self, "a_sku", _float_array(self.a_sku, (j,), "a_sku"))
        set_(self, "log_e", _float_array(self.log_e, (s, c), "log_e"))
        set_(self, "lift", _float_array(self.lift, (k,), "lift"))
        set_(self, "segment_lift", _float_array(self.segment_lift, (s, k), "segment_lift"))
        set_(self, "ladder", tuple(float(f) for f in self.ladder))
        set_(self, "context_features", tuple(self.context_features))
        if ((self.sku_category < 0) | (self.sku_category >= c)).any():
            raise ValueError("market: sku_category out of range")
        if (self.list_price_minor <= 0).any() or (self.unit_cost_minor < 0).any():
            raise ValueError("market: list prices must be positive and unit costs >= 0")
        for name in ("segment_mix", "sku_mix"):
            mix = getattr(self, name)
            if (mix < 0).any() or abs(float(mix.sum()) - 1.0) > 1e-9:
                raise ValueError(f"market: {name} must be non-negative and sum to 1")
        ladder = np.array(self.ladder)
        if not len(ladder) or (ladder <= 0).any() or (np.diff(ladder) <= 0).any():
            raise ValueError("market: ladder must be positive and strictly increasing")
        prices = self.prices
        if (prices <= 0).any() or (np.diff(prices, axis=1) <= 0).any():
            raise ValueError("market: candidate prices must be positive and distinct per SKU")
        if k and (self.effective_prices <= 0).any():
            raise ValueError("market: a promotion leaves a candidate price at or below zero")
        if self.family not in FAMILIES:
            raise ValueError(f"market: family must be one of {FAMILIES}, got {self.family!r}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_segments(self) -> int:
        """S."""
        return len(self.segments)

    @property
    def n_skus(self) -> int:
        """J."""
        return len(self.skus)

    @property
    def n_promotions(self) -> int:
        """K."""
        return len(self.promotions)

    @property
    def n_prices(self) -> int:
        """P, candidate prices per SKU."""
        return len(self.ladder)

    @property
    def n_actions(self) -> int:
        """A = P × (K + 1), candidate actions per SKU."""
        return self.n_prices * (self.n_promotions + 1)

    @property
    def n_contexts(self) -> int:
        """X, the number of level combinations of the context features (1 without features)."""
        return int(np.prod([len(f.levels) for f in self.context_features], dtype=np.int64))

    # ------------------------------------------------------------------ context
    @cached_property
    def context_levels(self) -> IntArray:
        """Level index of every feature in every context, shape (X, F)."""
        sizes = [len(f.levels) for f in self.context_features]
        out: IntArray = np.array(
            np.unravel_index(np.arange(self.n_contexts), sizes) if sizes else np.zeros((0, 1)),
            dtype=np.int64,
        ).T.reshape(self.n_contexts, len(sizes))
        return out

    @cached_property
    def context_offset(self) -> FloatArray:
        """Logit shift of every context, shape (X,): the sum of its levels' effects."""
        out = np.zeros(self.n_contexts)
        for i, f in enumerate(self.context_features):
            out += np.asarray(f.effect)[self.context_levels[:, i]]
        return out

    @cached_property
    def context_mix(self) -> FloatArray:
        """Probability of every context among visitors, shape (X,) (features independent)."""
        out = np.ones(self.n_contexts)
        for i, f in enumerate(self.context_features):
            out *= np.asarray(f.mix)[self.context_levels[:, i]]
        return out

    def context_values(self, context: int) -> dict[str, str]:
        """The request ``context`` a visitor in context ``context`` sends: feature → level."""
        return {
            f.name: f.levels[int(self.context_levels[context, i])]
            for i, f in enumerate(self.context_features)
        }

    def context_schema(self) -> dict[str, Any]:
        """The engine's declaration of these features (``PUT /v1/context-schema`` body)."""
        return {
            "features": [
                {"name": f.name, "kind": "categorical", "levels": list(f.levels)}
                for f in self.context_features
            ]
        }

    # ------------------------------------------------------------------ candidate set
    @cached_property
    def prices(self) -> IntArray:
        """Candidate prices, shape (J, P), minor units: list × ladder fraction, rounded half up."""
        exact = self.list_price_minor[:, None] * np.array(self.ladder)[None, :]
        out: IntArray = np.floor(exact + 0.5 + 1e-9).astype(np.int64)
        return out

    @cached_property
    def action_price_index(self) -> IntArray:
        """Price index of each action, shape (A,)."""
        out: IntArray = np.arange(self.n_actions, dtype=np.int64) % self.n_prices
        return out

    @cached_property
    def action_promotion(self) -> IntArray:
        """Promotion index of each action, shape (A,); -1 for no promotion."""
        out: IntArray = np.arange(self.n_actions, dtype=np.int64) // self.n_prices - 1
        return out

    @cached_property
    def action_prices(self) -> IntArray:
        """Price of every action of every SKU, shape (J, A), minor units."""
        out: IntArray = self.prices[:, self.action_price_index]
        return out

    @cached_property
    def action_discounts(self) -> IntArray:
        """Discount of every action of every SKU, shape (J, A), minor units."""
        return self.discounts(self.action_promotion[None, :], self.action_prices)

    @cached_property
    def effective_prices(self) -> IntArray:
        """Price the customer pays for every action of every SKU, shape (J, A), minor units."""
        out: IntArray = self.action_prices - self.action_discounts
        return out

    def candidate_prices(self, sku: int) -> IntArray:
        """The candidate prices of one SKU, shape (P,), minor units (a copy)."""
        out: IntArray = self.prices[sku].copy()
        return out

    def action_index(self, sku: int, price_minor: int, promotion: int = -1) -> int:
        """The action serving ``price_minor`` with ``promotion`` (-1: none) for SKU ``sku``.

        Raises
        ------
        ValueError
            If the price is not one of the SKU's candidate prices, or the promotion is unknown.
        """
        if not -1 <= promotion < self.n_promotions:
            raise ValueError(f"unknown promotion index {promotion}")
        hits = np.flatnonzero(self.prices[sku] == price_minor)
        if not len(hits):
            raise ValueError(f"price {price_minor} is not a candidate price of SKU {sku}")
        return int((promotion + 1) * self.n_prices + hits[0])

    def action(self, sku: int, action: int) -> tuple[int, int]:
        """(price in minor units, promotion index or -1) of an action of SKU ``sku``."""
        return int(self.action_prices[sku, action]), int(self.action_promotion[action])

    # ------------------------------------------------------------------ economics
    def discounts(self, promotion: ArrayLike, price_minor: ArrayLike) -> IntArray:
        """Discount per unit, minor units, broadcast over ``promotion`` (-1: none) and prices."""
        k, price = np.broadcast_arrays(
            np.asarray(promotion, dtype=np.int64), np.asarray(price_minor, dtype=np.int64)
        )
        out = np.zeros(k.shape, dtype=np.int64)
        for i, promo in enumerate(self.promotions):
            mask = k == i
            if mask.any():
                out[mask] = promo.discounts(price[mask])
        return out

    def promotion_cost(self, promotion: ArrayLike) -> IntArray:
        """Merchant's cost per purchase of each promotion index (-1: none, cost 0), minor units."""
        costs = np.array([0, *(p.cost_minor for p in self.promotions)], dtype=np.int64)
        out: IntArray = costs[np.asarray(promotion, dtype=np.int64) + 1]
        return out

    def margin(self, sku: ArrayLike, price_minor: ArrayLike, promotion: ArrayLike = -1) -> IntArray:
        """Profit of a purchase: price − discount − unit cost − promotion cost (minor units).

        Broadcasts over its arguments.
        """
        j = np.asarray(sku, dtype=np.int64)
        price = np.asarray(price_minor, dtype=np.int64)
        k = np.asarray(promotion, dtype=np.int64)
        out: IntArray = (
            price - self.discounts(k, price) - self.unit_cost_minor[j] - self.promotion_cost(k)
        )
        return out

    def profit(
        self, sku: ArrayLike, price_minor: ArrayLike, promotion: ArrayLike, converted: ArrayLike
    ) -> IntArray:
        """Realised profit of outcomes, minor units: :meth:`margin` if converted, else 0.

        The free-shipping cost is borne only on a purchase; a visitor who does not buy
        costs nothing. Broadcasts over its arguments.
        """
        bought = np.asarray(converted, dtype=bool)
        out: IntArray = np.where(bought, self.margin(sku, price_minor, promotion), 0)
        return out

    def conversion_probability(
        self,
        segment: ArrayLike,
        sku: ArrayLike,
        price_minor: ArrayLike,
        promotion: ArrayLike = -1,
        context: ArrayLike = 0,
    ) -> FloatArray:
        """True P(buy) for visitors of ``segment`` on ``sku`` offered a price and promotion.

        Parameters
        ----------
        segment, sku : int or array of int
            Indices into :attr:`segments` and :attr:`skus`.
        price_minor : int or array of int
            Price offered before the promotion's discount, minor units (> 0; any price,
            not only a candidate one).
        promotion : int or array of int
            Promotion index, -1 for none.
        context : int or array of int
            Context index (0: every feature at its reference level).

        Returns
        -------
        ndarray
            Probabilities in (0, 1), of the inputs' broadcast shape (0-d for scalars).
        """
        s = np.asarray(segment, dtype=np.int64)
        j = np.asarray(sku, dtype=np.int64)
        price = np.asarray(price_minor, dtype=np.int64)
        k = np.asarray(promotion, dtype=np.int64)
        effective = price - self.discounts(k, price)
        if (effective <= 0).any():
            raise ValueError("effective price must be positive")
        x = np.asarray(context, dtype=np.int64)
        return self._probability(s, j, effective / self.list_price_minor[j], k, x)

    def _probability(
        self,
        s: IntArray,
        j: IntArray,
        effective_ratio: FloatArray,
        k: IntArray,
        x: IntArray | int = 0,
        reference_ratio: FloatArray | None = None,
    ) -> FloatArray:
        lift = np.concatenate([[0.0], self.lift])[k + 1]
        segment_lift = np.concatenate([np.zeros((self.n_segments, 1)), self.segment_lift], axis=1)
        base = self.a_seg[s] + self.a_sku[j] + lift + segment_lift[s, k + 1] + self.context_offset[x]
        e = np.exp(self.log_e[s, self.sku_category[j]])
        family = self.family
        if family == "interaction" and self.context_features:
            # Each context level answers price differently: 1 - 0.4 ... 1 + 0.4 across contexts.
            n = max(self.n_contexts - 1, 1)
            e = e * (1.0 + 0.8 * (np.asarray(x) / n - 0.5))
        if family in ("logistic", "interaction", "probit", "reference"):
            eta = base - e * np.log(effective_ratio)
            if family == "reference" and reference_ratio is not None:
                d = np.log(effective_ratio / reference_ratio)
                eta = eta - e * (REFERENCE_LOSS * np.maximum(d, 0.0) + REFERENCE_GAIN * np.minimum(d, 0.0))
            if family == "probit":
                phi = 0.5 * (1.0 + _erf(np.asarray(eta, dtype=np.float64) / (1.7 * math.sqrt(2.0))))
                out: FloatArray = np.clip(phi, 1e-6, 1 - 1e-6)
                return out
            out = 0.5 * (1.0 + np.tanh(0.5 * eta))  # logistic without overflow
            return out
        p0 = 0.5 * (1.0 + np.tanh(0.5 * base))
        slope = e * (1.0 - p0)  # d log P / d r at list price, as the logistic's
        if family == "linear":
            out = np.clip(p0 * (1.0 - slope * (effective_ratio - 1.0)), 1e-3, 0.999)
        else:  # exponential
            out = np.minimum(p0 * np.exp(-slope * (effective_ratio - 1.0)), 0.999)
        return out

    def probability_at_ratio(
        self,
        segment: ArrayLike,
        sku: ArrayLike,
        effective_ratio: ArrayLike,
        promotion: ArrayLike = -1,
        context: ArrayLike = 0,
    ) -> FloatArray:
        """True P(buy) when the customer pays ``effective_ratio`` × list price (broadcast).

        For prices that are not candidates, e.g. a final price served by a running engine
        after its own discount; ``promotion`` (-1: none) only adds its lift here.
        """
        ratio = np.asarray(effective_ratio, dtype=np.float64)
        if (ratio <= 0).any():
            raise ValueError("effective ratio must be positive")
        return self._probability(
            np.asarray(segment, dtype=np.int64),
            np.asarray(sku, dtype=np.int64),
            ratio,
            np.asarray(promotion, dtype=np.int64),
            np.asarray(context, dtype=np.int64),
        )

    def expected_profit_at(
        self,
        segment: ArrayLike,
        sku: ArrayLike,
        price_minor: ArrayLike,
        promotion: ArrayLike = -1,
        context: ArrayLike = 0,
    ) -> FloatArray:
        """Expected profit per visitor at any price: P(buy) × margin, minor units (broadcast)."""
        p = self.conversion_probability(segment, sku, price_minor, promotion, context)
        out: FloatArray = p * self.margin(sku, price_minor, promotion)
        return out

    # ------------------------------------------------------------------ tables and oracle
    @cached_property
    def context_probability_table(self) -> FloatArray:
        """P(buy) of every action in every context, shape (X, S, J, A)."""
        s = np.arange(self.n_segments)[None, :, None, None]
        j = np.arange(self.n_skus)[None, None, :, None]
        ratio = (self.effective_prices / self.list_price_minor[:, None])[None, None, :, :]
        k = self.action_promotion[None, None, None, :]
        x = np.arange(self.n_contexts)[:, None, None, None]
        return self._probability(s, j, ratio, k, x)

    @property
    def probability_table(self) -> FloatArray:
        """P(buy) of every action in context 0, shape (S, J, A)."""
        out: FloatArray = self.context_probability_table[0]
        return out

    @cached_property
    def margin_table(self) -> IntArray:
        """Profit of a purchase for every action of every SKU, shape (J, A), minor units."""
        j = np.arange(self.n_skus)[:, None]
        return self.margin(j, self.action_prices, self.action_promotion[None, :])

    @cached_property
    def context_expected_profit_table(self) -> FloatArray:
        """Expected profit per visitor of every action in every context, shape (X, S, J, A),
        minor units."""
        out: FloatArray = self.context_probability_table * self.margin_table[None, None, :, :]
        return out

    @property
    def expected_profit_table(self) -> FloatArray:
        """Expected profit per visitor of every action in context 0, shape (S, J, A), minor units."""
        out: FloatArray = self.context_expected_profit_table[0]
        return out

    @cached_property
    def context_oracle_actions(self) -> IntArray:
        """The best candidate action per (context, segment, SKU), shape (X, S, J); ties: lowest
        index."""
        out: IntArray = np.argmax(self.context_expected_profit_table, axis=3).astype(np.int64)
        return out

    @property
    def oracle_actions(self) -> IntArray:
        """The best candidate action per (segment, SKU) in context 0, shape (S, J)."""
        out: IntArray = self.context_oracle_actions[0]
        return out

    def oracle(self, segment: ArrayLike, sku: ArrayLike, context: ArrayLike = 0) -> IntArray:
        """The oracle's action for visitors (broadcast over segment, SKU and context indices)."""
        out: IntArray = self.context_oracle_actions[
            np.asarray(context, dtype=np.int64),
            np.asarray(segment, dtype=np.int64),
            np.asarray(sku, dtype=np.int64),
        ]
        return out

    def expected_profit(
        self, segment: ArrayLike, sku: ArrayLike, action: ArrayLike, context: ArrayLike = 0
    ) -> FloatArray:
        """Expected profit per visitor of candidate actions, minor units (broadcast)."""
        out: FloatArray = self.context_expected_profit_table[
            np.asarray(context, dtype=np.int64),
            np.asarray(segment, dtype=np.int64),
            np.asarray(sku, dtype=np.int64),
            np.asarray(action, dtype=np.int64),
        ]
        return out

    def oracle_action(self, segment: int, sku: int, context: int = 0) -> int:
        """The candidate action with the highest expected profit for (segment, SKU, context)."""
        return int(self.context_oracle_actions[context, segment, sku])

    def oracle_expected_profit(self, segment: int, sku: int, context: int = 0) -> float:
        """Best expected profit per visitor within the candidate set, minor units."""
        table = self.context_expected_profit_table[context, segment, sku]
        return float(table[self.context_oracle_actions[context, segment, sku]])

    def list_action(self, sku: int) -> int:
        """The action serving the candidate price nearest list price, with no promotion."""
        return int(np.argmin(np.abs(self.prices[sku] - self.list_price_minor[sku])))

    # ------------------------------------------------------------------ customers
    def visitors(self, n: int, seed: int) -> tuple[IntArray, IntArray]:
        """A stream of ``n`` visitors: (segment index, SKU index), each of shape (n,).

        Segments follow :attr:`segment_mix` and SKUs :attr:`sku_mix`, independently. The
        same ``seed`` gives the same stream in every process; the first m visitors of a
        longer stream are not those of a shorter one.
        """
        rng = np.random.default_rng([seed, 0])
        segment = rng.choice(self.n_segments, size=n, p=self.segment_mix).astype(np.int64)
        sku = rng.choice(self.n_skus, size=n, p=self.sku_mix).astype(np.int64)
        return segment, sku

    def contexts(self, n: int, seed: int) -> IntArray:
        """The context index of each of ``n`` visitors, shape (n,), following :attr:`context_mix`.

        From a third stream of ``seed``: adding context features to a market leaves its
        :meth:`visitors` and :meth:`purchase_draws` unchanged. All zeros without features.
        """
        if not self.context_features:
            return np.zeros(n, dtype=np.int64)
        rng = np.random.default_rng([seed, 2])
        out: IntArray = rng.choice(self.n_contexts, size=n, p=self.context_mix).astype(np.int64)
        return out

    def purchase_draws(self, n: int, seed: int) -> FloatArray:
        """Uniform draws in [0, 1), shape (n,): visitor t buys iff ``u[t] < P(buy)``.

        Independent of :meth:`visitors` for the same ``seed``.
        """
        out: FloatArray = np.random.default_rng([seed, 1]).random(n)
        return out

    @property
    def path_dependent(self) -> bool:
        """Whether demand depends on the prices served before (the ``reference`` family)."""
        return self.family == "reference"

    def reference_state(self) -> FloatArray:
        """A fresh stream's last-seen price ratios, shape (X, S, J): all 1 (list price)."""
        return np.ones((self.n_contexts, self.n_segments, self.n_skus))

    def stream_probability(
        self,
        segment: ArrayLike,
        sku: ArrayLike,
        action: ArrayLike,
        context: ArrayLike = 0,
        state: FloatArray | None = None,
    ) -> FloatArray:
        """True P(buy) of each visitor of a stream, in order, given the actions served.

        For every family but ``reference`` this is the table lookup (broadcast). For the
        ``reference`` family each visitor compares the effective price with the one served
        to the previous visitor of the same (context, segment, SKU) cell.

        Parameters
        ----------
        segment, sku, action : array of int, shape (T,)
            Visitors in arrival order and the candidate actions served to them.
        context : int or array of int, shape (T,)
        state : ndarray, shape (X, S, J), optional
            Last effective price ratio seen in each cell before this stream
            (:meth:`reference_state`); updated in place to the state after it, so that a
            long stream can be played in consecutive pieces. None: a fresh stream.

        Returns
        -------
        ndarray, shape (T,)
        """
        s = np.asarray(segment, dtype=np.int64)
        j = np.asarray(sku, dtype=np.int64)
        a = np.asarray(action, dtype=np.int64)
        x = np.asarray(context, dtype=np.int64)
        if not self.path_dependent:
            out: FloatArray = self.context_probability_table[x, s, j, a]
            return out
        s, j, a, x = np.broadcast_arrays(s, j, a, x)
        if s.ndim != 1:
            raise ValueError("a path-dependent market plays a stream: 1-d arrays of visitors")
        shape = (self.n_contexts, self.n_segments, self.n_skus)
        if state is None:
            state = self.reference_state()
        elif state.shape != shape or not state.flags.c_contiguous or not state.flags.writeable:
            raise ValueError(f"state must be a writeable C-contiguous array of shape {shape}")
        ratio = self.effective_prices[j, a] / self.list_price_minor[j]
        cell = (x * self.n_segments + s) * self.n_skus + j
        flat = state.reshape(-1)
        order = np.argsort(cell, kind="stable")
        sorted_cell, sorted_ratio = cell[order], ratio[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_cell[1:] != sorted_cell[:-1]
        previous = np.empty(len(order))
        previous[first] = flat[sorted_cell[first]]
        previous[~first] = sorted_ratio[np.flatnonzero(~first) - 1]
        reference = np.empty(len(order))
        reference[order] = previous
        last = np.ones(len(order), dtype=bool)
        last[:-1] = first[1:]
        flat[sorted_cell[last]] = sorted_ratio[last]
        k = self.action_promotion[a]
        return self._probability(s, j, ratio, k, x, reference)

    def stream_expected_profit(
        self,
        segment: ArrayLike,
        sku: ArrayLike,
        action: ArrayLike,
        context: ArrayLike = 0,
        state: FloatArray | None = None,
    ) -> FloatArray:
        """Expected profit of each visitor of a stream, shape (T,), minor units.

        :meth:`stream_probability` × margin: the path-aware counterpart of
        :meth:`expected_profit`, equal to it for every family but ``reference``.
        """
        j = np.asarray(sku, dtype=np.int64)
        a = np.asarray(action, dtype=np.int64)
        p = self.stream_probability(segment, sku, action, context, state)
        out: FloatArray = p * self.margin_table[j, a]
        return out

    def play(
        self,
        segment: ArrayLike,
        sku: ArrayLike,
        action: ArrayLike,
        u: ArrayLike,
        context: ArrayLike = 0,
        state: FloatArray | None = None,
    ) -> tuple[NDArray[np.bool_], IntArray]:
        """Outcomes of candidate actions served to a stream in order: (converted, realised
        profit in minor units). ``state``: as :meth:`stream_probability`."""
        j = np.asarray(sku, dtype=np.int64)
        a = np.asarray(action, dtype=np.int64)
        p = self.stream_probability(segment, sku, action, context, state)
        converted: NDArray[np.bool_] = np.asarray(u) < p
        profit: IntArray = np.where(converted, self.margin_table[j, a], 0)
        return converted, profit

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(
        cls,
        n_segments: int = 5,
        n_skus: int = 10,
        n_categories: int = 2,
        n_promotions: int = 2,
        seed: int = 0,
        *,
        ladder: Sequence[float] = DEFAULT_LADDER,
        base_conversion: tuple[float, float] = (0.10, 0.30),
        elasticity: tuple[float, float] = (1.0, 3.0),
        lift: tuple[float, float] = (0.0, 0.6),
        segment_lift_sd: float = 0.0,
        segment_sd: float = 0.25,
        list_price_range: tuple[int, int] = (10, 60),
        cost_share: tuple[float, float] = (0.40, 0.65),
        n_context_features: int = 0,
        context_effect: tuple[float, float] = (-0.5, 0.5),
        family: str = "logistic",
    ) -> Market:
        """Draw a market with sensible defaults.

        Parameters
        ----------
        n_segments, n_skus, n_categories, n_promotions : int
            Sizes S, J, C and K. Promotions cycle through percent off (10, 15 or 20 %),
            free shipping (cost 2.00–5.00) and amount off (5–10 % of the cheapest list price).
        seed : int
            Everything below is drawn from ``numpy.random.default_rng(seed)``.
        ladder : sequence of float
            Candidate price fractions of list price.
        base_conversion : (float, float)
            Range of P(buy) at list price without promotion for an average segment.
        elasticity : (float, float)
            Range of the elasticities exp(log_e): a category level drawn uniformly, then a
            per-segment factor, clipped to the range.
        lift : (float, float)
            Range of the promotion lifts (logit scale).
        segment_lift_sd : float
            Standard deviation of the per-segment extra lift (0: none, as in the engine's model).
        segment_sd : float
            Standard deviation of the segment intercepts (they sum to zero).
        list_price_range : (int, int)
            List prices are whole major units in this range (× 100 minor units), so every
            5 % ladder step is a whole number of minor units.
        cost_share : (float, float)
            Range of unit cost as a share of list price.
        n_context_features : int
            How many of :data:`CONTEXT_CATALOGUE`'s features visitors carry (0 to 3). They
            are drawn from a separate stream of ``seed``: the rest of the market is the
            same with or without them.
        context_effect : (float, float)
            Range of each non-reference level's effect on the logit.
        """
        rng = np.random.default_rng(seed)
        list_price = rng.integers(list_price_range[0], list_price_range[1] + 1, n_skus) * 100
        unit_cost = np.round(list_price * rng.uniform(*cost_share, n_skus)).astype(np.int64)
        a_seg = rng.normal(0.0, segment_sd, n_segments)
        a_seg -= a_seg.mean()
        base = rng.uniform(*base_conversion, n_skus)
        a_sku = np.log(base / (1.0 - base))
        category_e = rng.uniform(*elasticity, n_categories)
        e = category_e[None, :] * np.exp(rng.normal(0.0, 0.15, (n_segments, n_categories)))
        log_e = np.log(np.clip(e, *elasticity))
        if not 0 <= n_context_features <= len(CONTEXT_CATALOGUE):
            raise ValueError(f"n_context_features must lie in 0..{len(CONTEXT_CATALOGUE)}")
        context_rng = np.random.default_rng([seed, 3])
        context_features = []
        for name, levels in CONTEXT_CATALOGUE[:n_context_features]:
            mix = context_rng.dirichlet(np.full(len(levels), 5.0))
            effect = (0.0, *context_rng.uniform(*context_effect, len(levels) - 1))
            context_features.append(
                ContextFeatureSpec(name, levels, tuple(mix.tolist()), tuple(map(float, effect)))
            )
        lowest = float(list_price.min()) * min(ladder)
        promotions = []
        for i in range(n_promotions):
            kind = ("percent_off", "free_shipping", "amount_off")[i % 3]
            if kind == "percent_off":
                spec = PromotionSpec(
                    f"promo{i}-pct", kind, percent_off=float(rng.choice([10.0, 15.0, 20.0]))
                )
            elif kind == "free_shipping":
                cost = int(rng.integers(20, 51)) * 10
                spec = PromotionSpec(f"promo{i}-ship", kind, shipping_cost_minor=cost)
            else:
                amount = max(1, round(lowest * rng.uniform(0.05, 0.10)))
                spec = PromotionSpec(f"promo{i}-amt", kind, amount_off_minor=amount)
            promotions.append(spec)
        return cls(
            segments=tuple(f"seg{i}" for i in range(n_segments)),
            skus=tuple(f"SKU-{j:04d}" for j in range(n_skus)),
            categories=tuple(f"cat{c}" for c in range(n_categories)),
            sku_category=np.arange(n_skus) % n_categories,
            list_price_minor=list_price,
            unit_cost_minor=unit_cost,
            segment_mix=rng.dirichlet(np.full(n_segments, 4.0)),
            sku_mix=rng.dirichlet(np.full(n_skus, 4.0)),
            a_seg=a_seg,
            a_sku=a_sku,
            log_e=log_e,
            promotions=tuple(promotions),
            lift=rng.uniform(*lift, n_promotions),
            segment_lift=rng.normal(0.0, segment_lift_sd, (n_segments, n_promotions))
            if segment_lift_sd > 0
            else np.zeros((n_segments, n_promotions)),
            ladder=tuple(float(f) for f in ladder),
            context_features=tuple(context_features),
            family=family,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (exact: floats survive a JSON round trip)."""
        return {
            "format": _FORMAT,
            "segments": list(self.segments),
            "skus": list(self.skus),
            "categories": list(self.categories),
            "sku_category": self.sku_category.tolist(),
            "list_price_minor": self.list_price_minor.tolist(),
            "unit_cost_minor": self.unit_cost_minor.tolist(),
            "segment_mix": self.segment_mix.tolist(),
            "sku_mix": self.sku_mix.tolist(),
            "a_seg": self.a_seg.tolist(),
            "a_sku": self.a_sku.tolist(),
            "log_e": self.log_e.tolist(),
            "promotions": [p.to_dict() for p in self.promotions],
            "lift": self.lift.tolist(),
            "segment_lift": self.segment_lift.tolist(),
            "ladder": list(self.ladder),
            "currency": self.currency,
            "context_features": [f.to_dict() for f in self.context_features],
            # Only when not the engine's own form: a logistic market's description is as before.
            **({"family": self.family} if self.family != "logistic" else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Market:
        """Rebuild the market :meth:`to_dict` described.

        Raises
        ------
        ValueError
            On an unknown format or inconsistent fields.
        """
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown market format {data.get('format')!r}")
        n_segments = len(data["segments"])
        n_promotions = len(data["promotions"])
        segment_lift = np.array(data["segment_lift"], dtype=np.float64).reshape(
            n_segments, n_promotions
        )
        return cls(
            segments=tuple(data["segments"]),
            skus=tuple(data["skus"]),
            categories=tuple(data["categories"]),
            sku_category=np.array(data["sku_category"], dtype=np.int64),
            list_price_minor=np.array(data["list_price_minor"], dtype=np.int64),
            unit_cost_minor=np.array(data["unit_cost_minor"], dtype=np.int64),
            segment_mix=np.array(data["segment_mix"], dtype=np.float64),
            sku_mix=np.array(data["sku_mix"], dtype=np.float64),
            a_seg=np.array(data["a_seg"], dtype=np.float64),
            a_sku=np.array(data["a_sku"], dtype=np.float64),
            log_e=np.array(data["log_e"], dtype=np.float64).reshape(
                n_segments, len(data["categories"])
            ),
            promotions=tuple(PromotionSpec.from_dict(p) for p in data["promotions"]),
            lift=np.array(data["lift"], dtype=np.float64),
            segment_lift=segment_lift,
            ladder=tuple(float(f) for f in data["ladder"]),
            currency=str(data.get("currency", "USD")),
            context_features=tuple(
                ContextFeatureSpec.from_dict(f) for f in data.get("context_features", [])
            ),
            family=str(data.get("family", "logistic")),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Market):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Drift:
    """Demand that moves during a run: a shift at one visitor, and a weekly cycle.

    The run's visitors are grouped into days of ``visitors_per_day``; visitor ``t`` meets
    the market of its *phase* (:meth:`phase`): before or after the shift, and its day of
    the week. Each phase is a :class:`Market` like the base one except for its intercepts
    and elasticities (:meth:`markets`), so every table and the oracle of a phase are the
    base market's machinery.

    Attributes
    ----------
    shift_at : int
        First visitor (0-based) after the shift.
    elasticity_factor : float
        Every elasticity is multiplied by this from the shift on (e.g. 1.5: customers
        compare more after a competitor's sale), > 0.
    intercept_shift : float
        Added to every segment intercept (logit scale) from the shift on.
    weekly_amplitude : float
        Intercepts move by ``amplitude * sin(2 pi day / 7)`` (logit scale) through the week.
    visitors_per_day : int
        Visitors in one simulated day (> 0).
    shift_categories : tuple of int or None
        Indices of the categories the shift hits (a competitor's sale in one aisle); None,
        the default, for every category. The intercept shift of a category goes onto its
        SKUs' intercepts.
    shift_segments : tuple of int or None
        Indices of the segments the shift hits (a competitor courting one kind of
        customer); None, the default, for every segment. With ``shift_categories`` too,
        the elasticity shift hits those (segment, category) pairs; the intercept shift of
        a segment goes onto its segment intercept, and of a segment in some categories
        only, onto nothing it could not reach (a :class:`Market`'s intercepts are per
        segment and per SKU): such a drift is refused.
    """

    shift_at: int
    elasticity_factor: float = 1.0
    intercept_shift: float = 0.0
    weekly_amplitude: float = 0.0
    visitors_per_day: int = 1000
    shift_categories: tuple[int, ...] | None = None
    shift_segments: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.shift_at < 0 or self.visitors_per_day <= 0 or self.elasticity_factor <= 0:
            raise ValueError("drift: shift_at >= 0, visitors_per_day > 0, elasticity_factor > 0")
        if self.shift_categories is not None:
            if not self.shift_categories or min(self.shift_categories) < 0:
                raise ValueError("drift: shift_categories must name at least one category index >= 0")
            object.__setattr__(self, "shift_categories", tuple(int(c) for c in self.shift_categories))
        if self.shift_segments is not None:
            if not self.shift_segments or min(self.shift_segments) < 0:
                raise ValueError("drift: shift_segments must name at least one segment index >= 0")
            object.__setattr__(self, "shift_segments", tuple(int(s) for s in self.shift_segments))
            if self.shift_categories is not None and self.intercept_shift != 0.0:
                raise ValueError("drift: an intercept shift in some segments of some categories "
                                 "is not a market's intercept (per segment, per SKU)")

    @property
    def n_phases(self) -> int:
        """Phases: 7 days of the week, before and after the shift."""
        return 14

    def day(self, t: ArrayLike) -> IntArray:
        """Day number of visitors ``t`` (0-based)."""
        return np.asarray(t, dtype=np.int64) // self.visitors_per_day

    def phase(self, t: ArrayLike) -> IntArray:
        """Phase of visitors ``t``: ``7 * after_shift + day % 7``."""
        t = np.asarray(t, dtype=np.int64)
        out: IntArray = 7 * (t >= self.shift_at).astype(np.int64) + self.day(t) % 7
        return out

    def markets(self, market: Market) -> tuple[Market, ...]:
        """The market of each phase (index = phase)."""
        hit = _hit_mask(self.shift_categories, len(market.categories), "categories")
        seg_hit = _hit_mask(self.shift_segments, len(market.segments), "segments")
        # The intercept shift: on the SKUs of the categories hit (every segment), or on the
        # segments hit (every category); __post_init__ refuses both at once.
        sku_shift = self.intercept_shift * hit[market.sku_category] if self.shift_segments is None else 0.0
        seg_shift = self.intercept_shift * seg_hit if self.shift_segments is not None else 0.0
        out = []
        for after in (0, 1):
            for weekday in range(7):
                offset = self.weekly_amplitude * math.sin(2.0 * math.pi * weekday / 7.0)
                out.append(dataclasses.replace(
                    market,
                    a_seg=market.a_seg + offset + after * seg_shift,
                    a_sku=market.a_sku + after * sku_shift,
                    log_e=market.log_e + after * math.log(self.elasticity_factor) * (seg_hit[:, None] & hit[None, :]),
                ))  # fmt: skip
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


def _hit_mask(indices: tuple[int, ...] | None, n: int, what: str) -> NDArray[np.bool_]:
    """Which of ``n`` categories (or segments) a drift's shift hits: all for None."""
    if indices is None:
        return np.ones(n, dtype=bool)
    if max(indices) >= n:
        raise ValueError(f"drift: the market has {n} {what}; shift_{what} {indices} names another")
    return np.isin(np.arange(n), indices)


def phased(phases: Sequence[Market], phase: IntArray, name: str, *args: Any) -> FloatArray:
    """Evaluate ``Market.<name>(segment, sku, ...)`` visitor by visitor in each visitor's phase.

    Parameters
    ----------
    phases : sequence of Market
        The market of each phase (:meth:`Drift.markets`).
    phase : ndarray of int, shape (T,)
        Each visitor's phase.
    name : str
        ``expected_profit`` or ``oracle``: methods whose arguments are per-visitor arrays
        of shape (T,) (segment, SKU, then e.g. actions).
    *args : ndarray, shape (T,)

    Returns
    -------
    ndarray, shape (T,)
    """
    out = np.zeros(len(phase), dtype=np.float64)
    for k in np.unique(phase):
        mask = phase == k
        out[mask] = getattr(phases[int(k)], name)(*(np.asarray(a)[mask] for a in args))
    return out


# ---------------------------------------------------------------------- scoring
def checkpoints(n: int, n_points: int = 50) -> IntArray:
    """Visitor counts at which learning curves are sampled: about ``n_points`` up to ``n``."""
    out: IntArray = np.unique(np.linspace(0, n, n_points + 1).round().astype(np.int64))[1:]
    return out


def summarize(
    expected: ArrayLike,
    oracle_expected: ArrayLike,
    realized: ArrayLike,
    oracle_realized: ArrayLike,
    n_points: int = 50,
) -> dict[str, Any]:
    """Totals and learning curves of one policy's run against the oracle on the same visitors.

    Parameters
    ----------
    expected : array, shape (T,)
        Expected profit of the action the policy served to each visitor (minor units).
    oracle_expected : array, shape (T,)
        The oracle's expected profit for each visitor.
    realized, oracle_realized : array, shape (T,)
        Realised profit of the policy and of the oracle on the same purchase draws.
    n_points : int
        Points of the learning curves.

    Returns
    -------
    dict
        JSON-serialisable: ``profit`` and ``expected_profit`` (totals), the oracle's
        ``oracle_profit`` and ``oracle_expected_profit``, ``late_expected_profit`` and
        ``late_oracle_expected_profit`` (last quarter of the visitors), ``t`` (checkpoints),
        ``cum_profit``, ``cum_regret`` (oracle minus policy, realised),
        ``cum_expected_regret`` and ``cum_oracle_expected_profit`` at each checkpoint.
    """
    e = np.asarray(expected, dtype=np.float64)
    oe = np.asarray(oracle_expected, dtype=np.float64)
    r = np.asarray(realized, dtype=np.float64)
    orr = np.asarray(oracle_realized, dtype=np.float64)
    n = len(e)
    if not (len(oe) == len(r) == len(orr) == n) or n == 0:
        raise ValueError("summarize: all series must have the same, positive length")
    t = checkpoints(n, n_points)
    late = slice(n - n // 4 if n >= 4 else 0, n)
    cum_r, cum_or = np.cumsum(r), np.cumsum(orr)
    cum_e, cum_oe = np.cumsum(e), np.cumsum(oe)
    return {
        "visitors": n,
        "profit": float(r.sum()),
        "expected_profit": float(e.sum()),
        "oracle_profit": float(orr.sum()),
        "oracle_expected_profit": float(oe.sum()),
        "late_expected_profit": float(e[late].sum()),
        "late_oracle_expected_profit": float(oe[late].sum()),
        "t": t.tolist(),
        "cum_profit": cum_r[t - 1].tolist(),
        "cum_regret": (cum_or - cum_r)[t - 1].tolist(),
        "cum_expected_regret": (cum_oe - cum_e)[t - 1].tolist(),
        "cum_oracle_expected_profit": cum_oe[t - 1].tolist(),
    }


def stream_digest(
    segment: IntArray, sku: IntArray, u: FloatArray, context: IntArray | None = None
) -> str:
    """Fingerprint of a visitor stream and its purchase draws (hex string).

    Lets two processes check that they play exactly the same visitors and draws. The
    context indices count only when some visitor is outside context 0, so a stream without
    context features has the digest it had before contexts existed.
    """
    h = hashlib.blake2b(digest_size=8)
    for values, dtype in ((segment, np.int64), (sku, np.int64), (u, np.float64)):
        h.update(np.ascontiguousarray(values, dtype=dtype).tobytes())
    if context is not None and np.any(context):
        h.update(np.ascontiguousarray(context, dtype=np.int64).tobytes())
    return h.hexdigest()
