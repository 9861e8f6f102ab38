"""The offers one cart may get, kept consistent across its lines (pure: no database).

The service hands :class:`OfferBook` what each promotion still allows *this worker* right
now (:class:`Allowance`: the unspent part of its budget and redemption lease, the
customer's remaining uses, the pacing rate). :meth:`OfferBook.offers_for` gives a line its
eligible offers within those limits, :meth:`OfferBook.take` books the chosen one so later
lines of the cart see what is left, and :attr:`OfferBook.taken` / :attr:`OfferBook.eligible`
tell the service what to persist.

Examples
--------
>>> from datetime import UTC, datetime
>>> from pricing.promotions import Promotion
>>> promo = Promotion(key="TEN", kind="percent_off", version=1, percent_off=10)
>>> book = OfferBook([promo], {"TEN": Allowance(free_budget_minor=500)})
>>> [o.promotion.key for o in book.offers_for(segment="s", sku="A", category="c",
...     currency="USD", cart_value_minor=1000, channel=None, now=datetime.now(UTC))]
['TEN']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pricing.promotions import Offer, Promotion

__all__ = ["Allowance", "OfferBook"]


@dataclass
class Allowance:
    """What a promotion still allows one worker for one customer (None = unlimited).

    Attributes
    ----------
    free_budget_minor : int or None
        Budget this worker may still hold for new offers (its lease's unspent part).
    offers_left : int or None
        Offers this worker may still make under the redemption cap (its lease).
    customer_left : int or None
        Offers the customer may still get in the promotion's period.
    pacing_rate_minor : float or None
        Expected spend allowed per eligible decision (paced promotions; None = unpaced).
    """

    free_budget_minor: int | None = None
    offers_left: int | None = None
    customer_left: int | None = None
    pacing_rate_minor: float | None = None


@dataclass
class OfferBook:
    """Offers for the lines of one cart.

    Parameters
    ----------
    promotions : sequence of Promotion
        Active promotions.
    allowances : mapping of str to Allowance
        Per promotion key; a missing key means no limit applies.
    """

    promotions: Sequence[Promotion]
    allowances: Mapping[str, Allowance]
    taken: list[tuple[Promotion, int]] = field(default_factory=list)
    eligible: dict[str, int] = field(default_factory=dict)

    def offers_for(
        self,
        *,
        segment: str,
        sku: str,
        category: str,
        currency: str,
        cart_value_minor: int,
        channel: str | None,
        now: datetime,
    ) -> tuple[Offer, ...]:
        """Offers for one line: eligible, within every limit, compatible with the cart.

        Counts the line in :attr:`eligible` for each eligible promotion (the pacing
        traffic estimate), whether or not a limit then rules the offer out.
        """
        out = []
        exclusive_taken = any(p.exclusive for p, _ in self.taken)
        for p in self.promotions:
            if p.ineligibility(segment=segment, sku=sku, category=category, currency=currency,
                               cart_value_minor=cart_value_minor, channel=channel, now=now):  # fmt: skip
                continue
            self.eligible[p.key] = self.eligible.get(p.key, 0) + 1
            allowance = self.allowances.get(p.key) or Allowance()
            others = [t for t, _ in self.taken if t.key != p.key]
            if others and (p.exclusive or exclusive_taken):
                continue  # an exclusive promotion is never combined with another one
            if allowance.offers_left is not None and allowance.offers_left <= 0:
                continue
            if allowance.customer_left is not None and allowance.customer_left <= 0:
                continue
            free = allowance.free_budget_minor
            if free is not None and free <= p.cost_minor:
                continue
            rate = allowance.pacing_rate_minor
            out.append(Offer(p, free, rate if rate is not None and rate != float("inf") else None))
        return tuple(out)

    def take(self, key: str, reserve_minor: int) -> None:
        """Book an offer made on a line: its hold, one offer and one customer use."""
        promotion = next(p for p in self.promotions if p.key == key)
        allowance = self.allowances.get(key)
        if allowance is not None:
            if allowance.free_budget_minor is not None:
                allowance.free_budget_minor -= reserve_minor
            if allowance.offers_left is not None:
                allowance.offers_left -= 1
            if allowance.customer_left is not None:
                allowance.customer_left -= 1
        self.taken.append((promotion, reserve_minor))
