"""Settlement: what an offer actually cost once its outcome is known.

Hard caps are enforced in the database without a per-quote lock (:mod:`api.hot.offer_book`):
workers spend leased slices of a capped promotion's budget and redemptions, every offer
holds ``discount × quantity + cost`` until its outcome arrives or its outcome window
closes, and the running totals in ``promotion_usage`` move in the writer's transactions.
Outcomes settle holds here (:func:`settle_many`, in the outcome's transaction): spend and
redemptions grow by what was actually given, the decision is marked settled/redeemed, and
what the hold did not use returns to the free budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from api.hot.offer_book import adjust_customer_usage, release_holds
from api.orm import PromotionUsage
from api.services.raw_sql import RawSQL
from pricing.money import MoneyError, from_minor, to_minor

__all__ = ["outcome_discount", "settle_many"]


def settle_many(session: Session, settled: Sequence[tuple[Any, Any]]) -> None:
    """Settle the offers of newly stored outcomes (same transaction as the outcomes).

    Parameters
    ----------
    settled : sequence of (decision, outcome)
        Decisions carrying a promotion (rows with ``id``, ``promotion``,
        ``promotion_reserved_minor``, ``customer_id``, ``promotion_period``) and their
        outcomes (``converted``, ``discount_minor``).
    """
    if not settled:
        return
    plain = {"synchronize_session": False}
    # The decisions' flags on the driver (RawSQL): one statement each, however many ids.
    raw = RawSQL.of(session)
    keys = {d.id: raw.uuid(d.id) for d, _ in settled}
    closed = set(raw.update_in(session, "decisions", "hold_open = FALSE", "id",
                               list(keys.values()), where="hold_open", returning="id"))  # fmt: skip
    was_open = {d.id for d, _ in settled if keys[d.id] in closed}
    for converted in (True, False):
        chosen = [keys[d.id] for d, o in settled if bool(o.converted) is converted]
        if chosen:
            raw.update_in(session, "decisions",
                          f"settled = TRUE, redeemed = {'TRUE' if converted else 'FALSE'}",
                          "id", chosen)  # fmt: skip
    release_holds(session, [
        (d.promotion, int(d.promotion_reserved_minor), d.customer_id, d.promotion_period,
         (bool(o.converted), int(o.discount_minor)))
        for d, o in settled if d.id in was_open
    ])  # fmt: skip
    totals: dict[str, list[int]] = {}  # spent, redemptions, settled, late allocated, late offers
    customers: dict[tuple[str, str, str], int] = {}
    for d, o in settled:
        t = totals.setdefault(d.promotion, [0, 0, 0, 0, 0])
        t[0] += int(o.discount_minor)
        t[1] += int(bool(o.converted))
        t[2] += 1
        if d.id not in was_open:  # late: its hold was already released, so what it gave
            t[3] += int(o.discount_minor)  # is allocated again (it is spent)
            t[4] += int(bool(o.converted))
            if o.converted and d.promotion_period is not None:
                slot = (d.promotion, d.customer_id, d.promotion_period)
                customers[slot] = customers.get(slot, 0) + 1
    for key in sorted(totals):
        spent, redeemed, n, late_money, late_offers = totals[key]
        session.execute(
            update(PromotionUsage).where(PromotionUsage.key == key).values(
                spent_minor=PromotionUsage.spent_minor + spent,
                redemptions=PromotionUsage.redemptions + redeemed,
                settled_offers=PromotionUsage.settled_offers + n,
                allocated_minor=PromotionUsage.allocated_minor + late_money,
                allocated_offers=PromotionUsage.allocated_offers + late_offers,
            ).execution_options(**plain)
        )  # fmt: skip
    adjust_customer_usage(session, customers)


def outcome_discount(decision: Any, *, converted: bool, quantity: int,
                     reported: Decimal | None) -> tuple[int | None, str | None]:  # fmt: skip
    """Promotion money given on an outcome (minor units), or an error message.

    Defaults to the offer's discount on the units bought (at most the quoted quantity) plus
    its cost; a reported amount may not exceed what the offer held.
    """
    if reported is not None:
        try:
            given = to_minor(reported, decision.currency)
        except MoneyError as exc:
            return None, f"discount: {exc}"
        if given > 0 and decision.promotion is None:
            return None, "discount: the decision carried no promotion"
        if given > decision.promotion_reserved_minor:
            held = from_minor(decision.promotion_reserved_minor, decision.currency)
            return None, f"discount: {reported} exceeds what the offer allowed ({held})"
        return given, None
    if not converted or decision.promotion is None:
        return 0, None
    units = min(quantity, decision.quantity)
    return decision.discount_minor * units + decision.promotion_cost_minor, None
