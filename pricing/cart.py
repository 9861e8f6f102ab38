"""Price a whole cart: a pure function of what the caches hold (no session, no ORM).

The quote service loads a cart's context from in-memory caches, calls :func:`price_cart`,
and hands the decisions to its writer. Keeping the decision pure means it runs outside
any transaction and holds no lock while it thinks, and that it can be tested without a
database.

Examples
--------
>>> from datetime import UTC, datetime
>>> from pricing.policy import ListPricePolicy
>>> item = CartItem("TEA-1", 2, "tea", "USD", 1000, 400)
>>> [line.decision.price_minor for line in price_cart(
...     [item], policy=ListPricePolicy(), segment="default", now=datetime.now(UTC))]
[1000]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pricing.offers import OfferBook
from pricing.policy import LineContext, PriceDecision, PricePolicy

__all__ = ["CartItem", "PricedLine", "StickyQuote", "price_cart"]

log = logging.getLogger("pricing.cart")


@dataclass(frozen=True, slots=True)
class CartItem:
    """One cart line with the facts of its product (money in minor units).

    Attributes
    ----------
    sku : str
    quantity : int
    category, currency : str
    list_price_minor, unit_cost_minor : int
    anchor_price_minor : int or None
        The SKU's daily anchor for ``max_change`` / ``segment_gap``.
    """

    sku: str
    quantity: int
    category: str
    currency: str
    list_price_minor: int
    unit_cost_minor: int
    anchor_price_minor: int | None = None


@dataclass(frozen=True, slots=True)
class StickyQuote:
    """An unexpired earlier decision for the same customer and SKU.

    Attributes
    ----------
    decision_id : object
        Its id (re-shown as is when the quote is repeated).
    segment : str
    quantity : int
    price_minor : int
    personalized : bool
    model_version : str or None
    expires_at : datetime
    reported : bool
        An outcome is already stored for it: a repeat becomes a new decision at the same
        price (so a second purchase is counted), not the same decision again.
    propensity, fallback, reasons, promotion, discount_minor
        As logged, shown again with a repeat.
    """

    decision_id: object
    segment: str
    quantity: int
    price_minor: int
    personalized: bool
    model_version: str | None
    expires_at: datetime
    reported: bool = False
    propensity: float = 1.0
    fallback: bool = False
    reasons: tuple[str, ...] = ()
    promotion: str | None = None
    discount_minor: int = 0


@dataclass(frozen=True, slots=True)
class PricedLine:
    """The outcome of pricing one line.

    Exactly one of ``repeat`` (the earlier decision, shown again, nothing new logged) and
    ``decision`` (a new decision to log) is set. ``expires_at`` overrides the quote's
    expiry for a new decision that keeps an earlier quote's price.
    """

    index: int
    item: CartItem
    decision: PriceDecision | None = None
    repeat: StickyQuote | None = None
    expires_at: datetime | None = None


def price_cart(
    items: Sequence[CartItem],
    *,
    policy: PricePolicy,
    segment: str,
    now: datetime,
    personalization_allowed: bool = True,
    features: Mapping[str, object] | None = None,
    sticky: Mapping[str, StickyQuote] | None = None,
    book: OfferBook | None = None,
    channel: str | None = None,
) -> list[PricedLine]:
    """Decide every line of a cart.

    Parameters
    ----------
    items : sequence of CartItem, length n_lines
    policy : PricePolicy
        Decides each new line.
    segment : str
        The customer's resolved segment.
    now : datetime
        Decision time (UTC): promotion windows are checked against it.
    personalization_allowed : bool
        False when the customer opted out.
    features : mapping, optional
        Declared context features.
    sticky : mapping of SKU to StickyQuote, optional
        Unexpired earlier decisions of this customer; one for another segment is ignored.
    book : OfferBook, optional
        Offers the cart may get (None: no promotions). Chosen offers are booked in it.
    channel : str, optional
        Sales channel (promotion eligibility).

    Returns
    -------
    list of PricedLine, length n_lines
        In line order. A policy that raises never fails the cart: the line gets the list
        price, flagged ``fallback`` with reason ``policy_error``.
    """
    features = features or {}
    sticky = sticky or {}
    cart_value: dict[str, int] = {}
    for item in items:
        cart_value[item.currency] = (
            cart_value.get(item.currency, 0) + item.list_price_minor * item.quantity
        )
    out: list[PricedLine] = []
    for index, item in enumerate(items):
        previous = sticky.get(item.sku) if personalization_allowed else None
        if previous is not None and previous.segment != segment:
            previous = None
        if previous is not None and not previous.reported and previous.quantity == item.quantity:
            out.append(PricedLine(index, item, repeat=previous))
            continue
        if previous is not None:
            # Same price until the earlier quote expires; a new decision, so a second
            # purchase is counted. Not a policy choice: propensity 1, policy "sticky/1".
            decision = PriceDecision(previous.price_minor, 1.0, previous.personalized, "sticky/1",
                                     ("sticky_quote",), previous.model_version, False, 1)  # fmt: skip
            out.append(PricedLine(index, item, decision, expires_at=previous.expires_at))
            continue
        offers = (
            book.offers_for(
                segment=segment, sku=item.sku, category=item.category, currency=item.currency,
                cart_value_minor=cart_value[item.currency], channel=channel, now=now,
            ) if book is not None else ()
        )  # fmt: skip
        line = LineContext(
            segment=segment, sku=item.sku, category=item.category, currency=item.currency,
            list_price_minor=item.list_price_minor, unit_cost_minor=item.unit_cost_minor,
            quantity=item.quantity, personalization_allowed=personalization_allowed,
            features=features, anchor_price_minor=item.anchor_price_minor, offers=offers,
        )  # fmt: skip
        try:
            decision = policy.decide(line)
        except Exception:  # a failing model never fails checkout: list price, flagged
            log.exception("price policy failed for %s; serving the list price", item.sku)
            decision = PriceDecision(item.list_price_minor, 1.0, False, "fallback", ("policy_error",),
                                     None, True, 1)  # fmt: skip
        if decision.promotion is not None:
            if book is None:
                raise RuntimeError(f"policy offered {decision.promotion} without an offer book")
            book.take(decision.promotion, decision.reserve_minor)
        out.append(PricedLine(index, item, decision))
    return out
