"""The promotion catalog: definitions (versioned, audited), validated against the
catalog, and each promotion's usage as the running totals show it.

The other jobs of promotions live elsewhere: the offer book and its leases on capped
budgets (:mod:`api.hot.offer_book`), settlement of offers when outcomes arrive
(:mod:`api.services.promotion_settlement`), and the pacing maths (:mod:`pricing.pacing`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import FieldProblem, Invalid, NotFound
from api.orm import (
    Product,
    PromotionUsage,
    PromotionVersion,
    Segment,
    utcnow,
)
from api.orm import Promotion as PromotionRow
from api.schemas.promotions import PromotionIn, PromotionPublic, UsagePublic
from api.security import Principal
from api.services.audit import SYSTEM, record_change
from pricing.money import CURRENCY_EXPONENTS, MoneyError, from_minor, to_minor
from pricing.pacing import pacing_rate
from pricing.promotions import Promotion

__all__ = [
    "get_promotion",
    "list_promotions",
    "load_active",
    "put_promotion",
]


def _money_minor(value: Decimal | None, currency: str | None, loc: list[str | int]) -> int | None:
    if value is None:
        return None
    if currency is None:
        raise Invalid([*loc[:-1], "currency"], f"{loc[-1]} needs a currency")
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise Invalid(loc, str(exc)) from None


def _compile(session: Session, key: str, body: PromotionIn, version: int) -> Promotion:
    """Validate ``body`` against the catalog and build the domain object (errors name the fields)."""
    problems: list[FieldProblem] = []
    if body.currency is not None and body.currency not in CURRENCY_EXPONENTS:
        problems.append(FieldProblem(["body", "currency"], f"unsupported currency {body.currency}"))
    if body.type == "percent_off" and body.percent_off is None:
        problems.append(FieldProblem(["body", "percent_off"], "required for type percent_off"))
    if body.type == "amount_off" and body.amount_off is None:
        problems.append(FieldProblem(["body", "amount_off"], "required for type amount_off"))
    if body.type == "free_shipping" and body.shipping_cost is None:
        problems.append(
            FieldProblem(
                ["body", "shipping_cost"], "required for type free_shipping (its cost to you)"
            )
        )
    for name in ("percent_off", "amount_off", "shipping_cost"):
        wanted = {
            "percent_off": "percent_off",
            "amount_off": "amount_off",
            "shipping_cost": "free_shipping",
        }[name]
        if getattr(body, name) is not None and body.type != wanted:
            problems.append(FieldProblem(["body", name], f"only for type {wanted}"))
    for name in ("amount_off", "budget"):
        value = getattr(body, name)
        if value is not None and value <= 0:
            problems.append(FieldProblem(["body", name], "must be a positive amount"))
    if body.shipping_cost is not None and body.shipping_cost < 0:
        problems.append(FieldProblem(["body", "shipping_cost"], "must not be negative"))
    elig = body.eligibility
    if elig.min_cart_value is not None and elig.min_cart_value < 0:
        problems.append(
            FieldProblem(["body", "eligibility", "min_cart_value"], "must not be negative")
        )
    if elig.starts_at and elig.ends_at and elig.ends_at <= elig.starts_at:
        problems.append(FieldProblem(["body", "eligibility", "ends_at"], "must be after starts_at"))
    for name, column in (("segments", Segment.key), ("skus", Product.sku)):
        wanted_keys = getattr(elig, name)
        if wanted_keys:
            known = set(session.scalars(select(column).where(column.in_(wanted_keys))))
            for i, item in enumerate(wanted_keys):
                if item not in known:
                    problems.append(
                        FieldProblem(
                            ["body", "eligibility", name, i], f"unknown {name[:-1]} {item!r}"
                        )
                    )
    if elig.categories:
        known = set(
            session.scalars(select(Product.category).where(Product.category.in_(elig.categories)))
        )
        for i, item in enumerate(elig.categories):
            if item not in known:
                problems.append(
                    FieldProblem(
                        ["body", "eligibility", "categories", i], f"no product in category {item!r}"
                    )
                )
    if body.currency is not None and elig.skus:
        priced = {
            sku: currency
            for sku, currency in session.execute(
                select(Product.sku, Product.currency).where(Product.sku.in_(elig.skus))
            )
        }
        for i, sku in enumerate(elig.skus):
            if sku in priced and priced[sku] != body.currency:
                problems.append(FieldProblem(["body", "eligibility", "skus", i],
                                             f"{sku} is priced in {priced[sku]}, not {body.currency}"))  # fmt: skip
    if problems:
        raise Invalid(problems)
    currency = body.currency
    amount = _money_minor(body.amount_off, currency, ["body", "amount_off"])
    shipping = _money_minor(body.shipping_cost, currency, ["body", "shipping_cost"])
    budget = _money_minor(body.budget, currency, ["body", "budget"])
    min_cart = _money_minor(
        elig.min_cart_value, currency, ["body", "eligibility", "min_cart_value"]
    )
    return Promotion(
        key=key, kind=body.type, version=version, percent_off=body.percent_off,
        amount_off_minor=amount, shipping_cost_minor=shipping or 0, currency=currency,
        segments=frozenset(elig.segments), categories=frozenset(elig.categories),
        skus=frozenset(elig.skus), channels=frozenset(elig.channels), min_cart_value_minor=min_cart,
        starts_at=elig.starts_at.astimezone(UTC) if elig.starts_at else None,
        ends_at=elig.ends_at.astimezone(UTC) if elig.ends_at else None,
        budget_minor=budget, redemption_cap=body.redemption_cap,
        per_customer_limit=body.per_customer_limit, per_customer_period=body.per_customer_period,
        exclusive=body.exclusive, active=body.active,
    )  # fmt: skip


def _text(minor: int | None, currency: str | None) -> str | None:
    if minor is None or currency is None:
        return None
    return str(from_minor(minor, currency))


def _public(row: PromotionRow, usage: UsagePublic | None = None) -> PromotionPublic:
    p = Promotion.from_dict(row.definition)
    c = p.currency
    return PromotionPublic(
        key=p.key, version=row.version, name=row.name, type=p.kind,
        percent_off=None if p.percent_off is None else str(p.percent_off),
        amount_off=_text(p.amount_off_minor, c),
        shipping_cost=_text(p.shipping_cost_minor, c) if p.kind == "free_shipping" else None,
        currency=c,
        eligibility={
            "segments": sorted(p.segments), "categories": sorted(p.categories),
            "skus": sorted(p.skus), "channels": sorted(p.channels),
            "min_cart_value": _text(p.min_cart_value_minor, c),
            "starts_at": p.starts_at.isoformat() if p.starts_at else None,
            "ends_at": p.ends_at.isoformat() if p.ends_at else None,
        },
        budget=_text(p.budget_minor, c), redemption_cap=p.redemption_cap,
        per_customer_limit=p.per_customer_limit, per_customer_period=p.per_customer_period,
        exclusive=p.exclusive, active=p.active, created_at=row.created_at,
        updated_at=row.updated_at, usage=usage,
    )  # fmt: skip


def put_promotion(
    session: Session, *, key: str, body: PromotionIn, actor: Principal | None
) -> tuple[PromotionPublic, bool]:
    """Create or replace a promotion as a new version (audited); returns (public, created)."""
    with session.begin():
        row = session.get(PromotionRow, key, with_for_update=True)
        version = 1 if row is None else row.version + 1
        promotion = _compile(session, key, body, version)
        before = _public(row).model_dump(mode="json") if row is not None else None
        now = utcnow()
        definition = promotion.to_dict()
        if row is None:
            row = PromotionRow(
                key=key, version=version, name=body.name, kind=body.type, definition=definition,
                active=body.active, created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            session.add(PromotionUsage(key=key, spent_minor=0, redemptions=0, settled_offers=0,
                                       eligible_visits=0))  # fmt: skip
        else:
            row.version, row.name, row.kind = version, body.name, body.type
            row.definition, row.active, row.updated_at = definition, body.active, now
        session.add(PromotionVersion(key=key, version=version, created_at=now, created_by=actor.name if actor else SYSTEM,
                                     definition=definition, active=body.active))  # fmt: skip
        session.flush()
        public = _public(row)
        record_change(
            session, actor=actor, action="create" if before is None else "update",
            entity="promotion", entity_id=key, before=before, after=public.model_dump(mode="json"),
        )  # fmt: skip
    return public, before is None


def _usage(session: Session, promotion: Promotion, now: datetime) -> UsagePublic:
    usage = session.get(PromotionUsage, promotion.key)
    c = promotion.currency
    spent = usage.spent_minor if usage else 0
    held = usage.held_minor if usage else 0
    remaining = None if promotion.budget_minor is None else promotion.budget_minor - spent - held
    rate = None
    if promotion.paced and usage is not None:
        assert promotion.budget_minor is not None and promotion.ends_at is not None
        rate = pacing_rate(
            budget=promotion.budget_minor, spent=usage.spent_minor, held=usage.held_minor,
            redemptions=usage.redemptions, settled_offers=usage.settled_offers,
            eligible_visits=usage.eligible_visits, first_eligible_at=usage.first_eligible_at,
            ends_at=promotion.ends_at, now=now,
        )  # fmt: skip
    return UsagePublic(
        spent=_text(spent, c), held=_text(held, c), remaining_budget=_text(remaining, c),
        redemptions=usage.redemptions if usage else 0,
        open_offers=usage.open_offers if usage else 0,
        eligible_visits=usage.eligible_visits if usage else 0,
        pacing_rate=None if rate is None or rate == float("inf") or c is None
        else str(from_minor(int(rate), c)),
    )  # fmt: skip


def get_promotion(session: Session, key: str) -> PromotionPublic:
    """One promotion with its usage (:class:`NotFound` naming ``key`` when unknown)."""
    row = session.get(PromotionRow, key)
    if row is None:
        raise NotFound(["path", "key"], f"unknown promotion {key!r}")
    return _public(row, _usage(session, Promotion.from_dict(row.definition), utcnow()))


def list_promotions(session: Session) -> list[PromotionPublic]:
    """Every promotion (active or not), by key, with usage."""
    now = utcnow()
    rows = session.scalars(select(PromotionRow).order_by(PromotionRow.key))
    return [_public(r, _usage(session, Promotion.from_dict(r.definition), now)) for r in rows]


def promotion_versions(session: Session, key: str) -> list[dict[str, Any]]:
    """Every stored version of a promotion, oldest first."""
    if session.get(PromotionRow, key) is None:
        raise NotFound(["path", "key"], f"unknown promotion {key!r}")
    rows = session.scalars(
        select(PromotionVersion)
        .where(PromotionVersion.key == key)
        .order_by(PromotionVersion.version)
    )
    return [{"version": r.version, "created_at": r.created_at.isoformat(), "created_by": r.created_by,
             "active": r.active, "definition": r.definition} for r in rows]  # fmt: skip


def load_active(session: Session) -> list[Promotion]:
    """Active promotions (date windows are checked per line)."""
    rows = session.scalars(select(PromotionRow).where(PromotionRow.active.is_(True)))
    return [Promotion.from_dict(r.definition) for r in rows]


# --------------------------------------------------------------------------- outcomes


