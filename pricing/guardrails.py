"""Merchandiser guardrails: which prices a line may get, and which rules bind.

Guardrails shape the candidate set *before* the policy chooses; nothing is clamped after
the choice (that would make the logged propensity wrong).

Scopes are global, category and SKU. For bounds (floor, ceiling, margin, discount,
increase, endings, step, exclusion) the most specific scope that sets a value wins; for
caps (maximum change vs the last served price, segment price gap) every scope applies and
the tightest wins.

All money is integer minor units; fractions are plain floats (0.2 = 20%).

Examples
--------
>>> rules = GuardrailSet(rules=(Rule("global", None, max_discount=0.2, max_increase=0.1),))
>>> prices, _ = rules.feasible_prices(ProductFacts("SKU-1", "tea", 1000, 400), n_max=5)
>>> prices.tolist()
[800, 875, 950, 1000, 1100]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from pricing.money import from_minor

__all__ = ["GuardrailError", "GuardrailSet", "ProductFacts", "Rule", "spread_indices"]

Scope = Literal["global", "category", "sku"]
_BOUND_FIELDS = (
    "floor",
    "ceiling",
    "min_margin",
    "max_discount",
    "max_increase",
    "ending",
    "step",
    "exclude",
)


def _money(minor: int | float, currency: str | None) -> str:
    """``10.00 USD`` when the currency is known, else the minor units, labelled as such."""
    if currency and isinstance(minor, int):
        return f"{from_minor(minor, currency)} {currency}"
    return f"{minor} (minor units)"


class GuardrailError(ValueError):
    """A guardrail set is contradictory or leaves a product without any price.

    Attributes
    ----------
    rules : tuple of str
        The rules at fault, named ``scope[:target].field``.
    """

    def __init__(self, message: str, rules: tuple[str, ...]) -> None:
        super().__init__(message)
        self.rules = rules


@dataclass(frozen=True)
class Rule:
    """The settings of one scope. ``None`` leaves a setting to a wider scope.

    Attributes
    ----------
    scope : {"global", "category", "sku"}
    target : str or None
        Category or SKU the rule applies to (None for global).
    floor, ceiling : int, optional
        Lowest / highest price, minor units.
    min_margin : float, optional
        Minimum markup over unit cost: price >= cost x (1 + min_margin).
    max_discount, max_increase : float, optional
        Largest cut / rise vs list price (fractions).
    max_change : float, optional
        Largest change vs the SKU's daily anchor price (fraction): the close of the last
        UTC day it sold (see :class:`ProductFacts`).
    ending : int, optional
        Required last two minor digits (99 for prices like 4.99).
    step : int, optional
        Price ladder step, minor units (ignored when ``ending`` is set).
    exclude : bool, optional
        True: no personalization for this scope (everyone gets the list price).
    segment_gap : float, optional
        Largest ratio between the highest and lowest price served to different segments
        for one SKU in one UTC day (1.1 = at most 10% apart). Held without coordination
        between workers: every price lies within ``anchor / sqrt(gap)`` and
        ``anchor * sqrt(gap)``, so any two prices of the day are within the gap.
    """

    scope: Scope
    target: str | None
    floor: int | None = None
    ceiling: int | None = None
    min_margin: float | None = None
    max_discount: float | None = None
    max_increase: float | None = None
    max_change: float | None = None
    ending: int | None = None
    step: int | None = None
    exclude: bool | None = None
    segment_gap: float | None = None

    @property
    def name(self) -> str:
        """``global``, ``category:tea`` or ``sku:TEA-1``."""
        return self.scope if self.target is None else f"{self.scope}:{self.target}"

    def problems(self, currency: str | None = None) -> list[tuple[str, str]]:
        """(field, message) for every invalid value of this rule alone.

        ``currency`` (the SKU's, for a sku rule) shows money in its units, not minor units.
        """
        out = []
        if (self.scope == "global") != (self.target is None):
            out.append(("target", "global rules have no target; category and sku rules need one"))
        for name in ("floor", "ceiling", "step"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                shown = _money(value, currency) if name != "step" or currency else value
                out.append((name, f"must be positive, got {shown}"))
        for name in ("min_margin", "max_increase", "max_change"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                out.append((name, f"must be a fraction >= 0, got {value}"))
        if self.segment_gap is not None and not (
            math.isfinite(self.segment_gap) and self.segment_gap >= 1
        ):
            out.append(("segment_gap", f"must be a ratio >= 1, got {self.segment_gap}"))
        if self.max_discount is not None and not (0 <= self.max_discount < 1):
            out.append(("max_discount", f"must be a fraction in [0, 1), got {self.max_discount}"))
        if self.ending is not None and not (0 <= self.ending <= 99):
            out.append(("ending", f"must be the last two minor digits, 0 to 99, got {self.ending}"))
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            floor, ceiling = _money(self.floor, currency), _money(self.ceiling, currency)
            out.append(("floor", f"floor {floor} is above ceiling {ceiling} of the same rule"))
        return out


@functools.lru_cache(maxsize=4096)
def spread_indices(n: int, k: int) -> NDArray[np.int64]:
    """Indices of ``k`` evenly spread positions of ``n`` (both ends kept), shape (<= k,).

    Cached and shared (read-only): the quote path thins a paced line's ladder with it, and
    ``numpy.linspace`` and ``numpy.unique`` release the GIL, which on a worker's event
    loop costs up to the switch interval while another thread is busy.
    """
    pick = np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))
    pick.flags.writeable = False
    return pick


@dataclass(frozen=True)
class ProductFacts:
    """What guardrails need to know about a SKU (money in minor units).

    ``anchor_price`` is the price the day's caps are measured from: the SKU's close (last
    price served) on the most recent earlier UTC day it sold, or its non-personalized price
    when it has not sold in the last 30 days. Every worker derives the same anchor from
    the shared daily aggregates, so ``max_change`` and ``segment_gap`` hold across any
    number of workers without a lock (docs/architecture.md). None: the caps do not bind.
    """

    sku: str
    category: str
    list_price: int
    unit_cost: int
    anchor_price: int | None = None


@dataclass(frozen=True)
class Resolved:
    """The settings that apply to one SKU, and the rule each came from."""

    values: dict[str, float | int | bool]
    source: dict[str, str]


@dataclass(frozen=True)
class GuardrailSet:
    """A versioned set of rules plus the global kill switch.

    Attributes
    ----------
    rules : tuple of Rule
    kill_switch : bool
        True: everyone gets the list price, no personalization anywhere.
    """

    rules: tuple[Rule, ...] = ()
    kill_switch: bool = False
    _by_scope: dict[tuple[str, str | None], Rule] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        for rule in self.rules:
            key = (rule.scope, rule.target)
            if key in self._by_scope:
                problems.append((rule.name, "two rules for the same scope"))
            self._by_scope[key] = rule
            problems += [(f"{rule.name}.{f}", m) for f, m in rule.problems()]
        if problems:
            raise GuardrailError(
                "; ".join(f"{n}: {m}" for n, m in problems), tuple(n for n, _ in problems)
            )

    def resolve(self, sku: str, category: str) -> Resolved:
        """Settings for one SKU: most specific scope for bounds, tightest for max_change."""
        chain = [
            self._by_scope.get(k) for k in (("sku", sku), ("category", category), ("global", None))
        ]
        values: dict[str, float | int | bool] = {}
        source: dict[str, str] = {}
        for name in _BOUND_FIELDS:
            for rule in chain:
                if rule is not None and getattr(rule, name) is not None:
                    values[name], source[name] = getattr(rule, name), rule.name
                    break
        for cap in ("max_change", "segment_gap"):
            caps = [
                (getattr(r, cap), r.name)
                for r in chain
                if r is not None and getattr(r, cap) is not None
            ]
            if caps:
                values[cap], source[cap] = min(caps)
        return Resolved(values, source)

    def bounds(self, product: ProductFacts) -> tuple[int, int, dict[str, list[str]]]:
        """Lowest and highest allowed price (minor units) and which rules set each.

        Returns
        -------
        tuple
            ``(low, high, binding)`` with ``binding["low"]`` / ``binding["high"]`` naming
            the rules (``scope:target.field``) that define each end.
        """
        r = self.resolve(product.sku, product.category)
        v, src = r.values, r.source
        lows: list[tuple[int, str]] = [(1, "positive")]
        highs: list[tuple[int, str]] = []
        if "floor" in v:
            lows.append((int(v["floor"]), f"{src['floor']}.floor"))
        if "ceiling" in v:
            highs.append((int(v["ceiling"]), f"{src['ceiling']}.ceiling"))
        if "min_margin" in v:
            lows.append((math.ceil(product.unit_cost * (1 + float(v["min_margin"])) - 1e-9),
                         f"{src['min_margin']}.min_margin"))  # fmt: skip
        if "max_discount" in v:
            lows.append((math.ceil(product.list_price * (1 - float(v["max_discount"])) - 1e-9),
                         f"{src['max_discount']}.max_discount"))  # fmt: skip
        if "max_increase" in v:
            highs.append((math.floor(product.list_price * (1 + float(v["max_increase"])) + 1e-9),
                          f"{src['max_increase']}.max_increase"))  # fmt: skip
        anchor = product.anchor_price
        if "max_change" in v and anchor is not None:
            change, name = float(v["max_change"]), f"{src['max_change']}.max_change"
            lows.append((math.ceil(anchor * (1 - change) - 1e-9), name))
            highs.append((math.floor(anchor * (1 + change) + 1e-9), name))
        if "segment_gap" in v and anchor is not None:
            half, name = math.sqrt(float(v["segment_gap"])), f"{src['segment_gap']}.segment_gap"
            lows.append((math.ceil(anchor / half - 1e-9), name))
            highs.append((math.floor(anchor * half + 1e-9), name))
        if "ceiling" not in v and "max_increase" not in v:
            # No rule allows prices above list: never more than the list price.
            highs.append((product.list_price, "list_price"))
        if "floor" not in v:
            # No rule allows selling at a loss: never below the unit cost (a merchandiser
            # who wants a loss leader sets a floor). Capped at list so a SKU costing more
            # than its list price can still be sold at list.
            lows.append((min(product.unit_cost, product.list_price), "unit_cost"))
        low = max(x for x, _ in lows)
        high = min(x for x, _ in highs)
        binding = {
            "low": [n for x, n in lows if x == low],
            "high": [n for x, n in highs if x == high],
        }
        return low, high, binding

    def personalization_allowed(self, product: ProductFacts) -> bool:
        """False under the kill switch or when the SKU's scope excludes personalization."""
        if self.kill_switch:
            return False
        return not bool(self.resolve(product.sku, product.category).values.get("exclude", False))

    def feasible_prices(
        self, product: ProductFacts, *, n_max: int = 50
    ) -> tuple[NDArray[np.int64], dict[str, list[str]]]:
        """The price ladder: every allowed price (minor units), at most ``n_max`` of them.

        Prices respect the bounds and the ending or step; when more than ``n_max`` qualify,
        ``n_max`` evenly spaced ones are kept, always including both ends and the list
        price if it qualifies.

        Returns
        -------
        tuple
            ``(prices, binding)``: sorted ``int64`` array, shape (n,) with 0 <= n <= n_max,
            and the rules binding the low and high ends.
        """
        low, high, binding = self.bounds(product)
        resolved = self.resolve(product.sku, product.category).values
        if high < low:
            return np.zeros(0, dtype=np.int64), binding
        if "ending" in resolved:
            ending = int(resolved["ending"])
            first = low + ((ending - low) % 100)
            grid = np.arange(first, high + 1, 100, dtype=np.int64)
        else:
            step = int(resolved.get("step", 1))
            first = step * math.ceil(low / step)
            grid = np.arange(first, high + 1, step, dtype=np.int64)
        if len(grid) > n_max:
            chosen = grid[spread_indices(len(grid), n_max)]
            if product.list_price in grid and product.list_price not in chosen:
                nearest = int(np.argmin(np.abs(chosen - product.list_price)))
                chosen[nearest] = product.list_price
                chosen = np.unique(chosen)
            grid = chosen
        return grid, binding

    def reference_price(self, product: ProductFacts) -> int | None:
        """The non-personalized price: the list price if allowed, else the allowed price nearest to it."""
        prices, _ = self.feasible_prices(product, n_max=10_000)
        if len(prices) == 0:
            return None
        return int(prices[np.argmin(np.abs(prices - product.list_price))])

    def check(
        self, products: list[ProductFacts], currencies: Mapping[str, str] | None = None
    ) -> None:
        """Raise :class:`GuardrailError` naming the binding rules if any product has no allowed price.

        Parameters
        ----------
        products : list of ProductFacts
        currencies : mapping of SKU to ISO 4217 code, optional
            Shows the bounds in the currency's units (``10.00 USD``) rather than minor units.
        """
        for product in products:
            prices, binding = self.feasible_prices(product)
            if len(prices) == 0:
                rules = tuple(dict.fromkeys(binding["low"] + binding["high"]))
                low, high, _ = self.bounds(product)
                currency = (currencies or {}).get(product.sku)
                raise GuardrailError(
                    f"no allowed price for {product.sku}: {', '.join(binding['low'])} require "
                    f">= {_money(low, currency)}, {', '.join(binding['high'])} allow "
                    f"<= {_money(high, currency)}",
                    rules,
                )

    @staticmethod
    def rule_fields() -> tuple[str, ...]:
        """Names of the settings a rule can carry."""
        return tuple(f.name for f in fields(Rule) if f.name not in ("scope", "target"))
