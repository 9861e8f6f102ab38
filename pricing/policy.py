"""Price policies: what price a quote line gets, and with what probability.

The service hands each line to a :class:`PricePolicy` and logs what it returns. Later
policies (Thompson sampling inside guardrails) replace :class:`ListPricePolicy` without
changing the service or the API contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LineContext", "ListPricePolicy", "PriceDecision", "PricePolicy"]


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
        Whether the price depends on the customer (segment, context) rather than being
        the list price everyone gets.
    policy : str
        Name and version of the policy that decided.
    reasons : tuple of str
        Why this price (e.g. ``"list_price"``, or the guardrails that bound it).
    model_version : str or None
        Posterior snapshot used, if any.
    fallback : bool
        True when the policy could not decide and the safe default was served.
    """

    price_minor: int
    propensity: float
    personalized: bool
    policy: str
    reasons: tuple[str, ...] = ()
    model_version: str | None = None
    fallback: bool = False


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
