"""Promotions: the catalog (versioned, audited), the limits a quote must respect, and
redemption accounting from outcomes.

Hard caps are enforced in the database, never in a worker's memory:

- every quote that may offer a capped promotion locks its ``promotion_usage`` row
  (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
  serialises writers) and reads settled spend plus the budget *held* by open offers;
- an offer holds ``discount × quantity + cost`` until its outcome arrives or its outcome
  window closes, so concurrent quotes can never promise more than the budget, the
  redemption cap or a customer's limit;
- outcomes settle the hold in their own transaction: spend and redemptions grow by what was
  actually given, and the decision is marked settled/redeemed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.errors import ApiError, FieldProblem
from api.orm import Decision, Product, PromotionUsage, PromotionVersion, Segment, utcnow
from api.orm import Promotion as PromotionRow
from api.schemas import IDENTIFIER_PATTERN, CurrencyCode, Money
from api.security import Principal
from api.services.audit import SYSTEM, record_change
from pricing.money import CURRENCY_EXPONENTS, MoneyError, from_minor, to_minor
from pricing.pacing import spend_rate
from pricing.promotions import Offer, Promotion

__all__ = [
    "OfferBook",
    "PromotionIn",
    "PromotionPublic",
    "get_promotion",
    "list_promotions",
    "load_active",
    "put_promotion",
]

Name = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class EligibilityIn(BaseModel):
    """Who and what a promotion applies to; empty lists mean "any"."""

    model_config = ConfigDict(extra="forbid")

    segments: Annotated[list[Name], Field(max_length=500)] = Field(default_factory=list)
    categories: Annotated[list[Name], Field(max_length=500)] = Field(default_factory=list)
    skus: Annotated[list[Name], Field(max_length=10_000)] = Field(default_factory=list)
    channels: Annotated[list[Name], Field(max_length=50)] = Field(default_factory=list)
    min_cart_value: Money | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class PromotionIn(BaseModel):
    """``PUT /v1/promotions/{key}``: the complete promotion (a new version each time)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["percent_off", "amount_off", "free_shipping"]
    percent_off: Annotated[Decimal, Field(gt=0, le=100, max_digits=6, decimal_places=3)] | None = (
        None
    )
    amount_off: Money | None = None
    shipping_cost: Money | None = None
    currency: CurrencyCode | None = None
    eligibility: EligibilityIn = Field(default_factory=EligibilityIn)
    budget: Money | None = None
    redemption_cap: Annotated[StrictInt, Field(ge=1)] | None = None
    per_customer_limit: Annotated[StrictInt, Field(ge=1)] | None = None
    per_customer_period: Literal["day", "campaign"] = "campaign"
    exclusive: StrictBool = True
    active: StrictBool = True


class UsagePublic(BaseModel):
    """Where a promotion stands: settled spend and redemptions, what open offers hold."""

    spent: str | None
    held: str | None
    remaining_budget: str | None
    redemptions: int
    open_offers: int
    eligible_visits: int
    pacing_rate: str | None = Field(
        description="expected spend allowed per eligible decision now (paced promotions)"
    )


class PromotionPublic(BaseModel):
    """A promotion as stored, with its usage."""

    key: str
    version: int
    name: str
    type: str
    percent_off: str | None
    amount_off: str | None
    shipping_cost: str | None
    currency: str | None
    eligibility: dict[str, Any]
    budget: str | None
    redemption_cap: int | None
    per_customer_limit: int | None
    per_customer_period: str
    exclusive: bool
    active: bool
    created_at: datetime
    updated_at: datetime
    usage: UsagePublic | None = None


def _money_minor(value: Decimal | None, currency: str | None, loc: list[str | int]) -> int | None:
    if value is None:
        return None
    if currency is None:
        raise ApiError.field(422, [*loc[:-1], "currency"], f"{loc[-1]} needs a currency")
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise ApiError.field(422, loc, str(exc)) from None


def _compile(session: Session, key: str, body: PromotionIn, version: int) -> Promotion:
    """Validate ``body`` against the catalog and build the domain object (422s name fields)."""
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
        raise ApiError(422, problems)
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
    held, open_offers = _open_holds(session, [promotion.key], now).get(promotion.key, (0, 0))
    c = promotion.currency
    spent = usage.spent_minor if usage else 0
    remaining = None if promotion.budget_minor is None else promotion.budget_minor - spent - held
    rate = _pacing_rate(promotion, usage, held, now) if promotion.paced else None
    return UsagePublic(
        spent=_text(spent, c), held=_text(held, c), remaining_budget=_text(remaining, c),
        redemptions=usage.redemptions if usage else 0, open_offers=open_offers,
        eligible_visits=usage.eligible_visits if usage else 0,
        pacing_rate=None if rate is None or rate == float("inf") or c is None
        else str(from_minor(int(rate), c)),
    )  # fmt: skip


def get_promotion(session: Session, key: str) -> PromotionPublic:
    """One promotion with its usage (404 naming ``key`` when unknown)."""
    row = session.get(PromotionRow, key)
    if row is None:
        raise ApiError.field(404, ["path", "key"], f"unknown promotion {key!r}", "not_found")
    return _public(row, _usage(session, Promotion.from_dict(row.definition), utcnow()))


def list_promotions(session: Session) -> list[PromotionPublic]:
    """Every promotion (active or not), by key, with usage."""
    now = utcnow()
    rows = session.scalars(select(PromotionRow).order_by(PromotionRow.key))
    return [_public(r, _usage(session, Promotion.from_dict(r.definition), now)) for r in rows]


def promotion_versions(session: Session, key: str) -> list[dict[str, Any]]:
    """Every stored version of a promotion, oldest first."""
    if session.get(PromotionRow, key) is None:
        raise ApiError.field(404, ["path", "key"], f"unknown promotion {key!r}", "not_found")
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


# --------------------------------------------------------------------------- limits
def _open_holds(session: Session, keys: Sequence[str], now: datetime) -> dict[str, tuple[int, int]]:
    """Budget held and offers open per promotion: unsettled offers inside their window."""
    rows = session.execute(
        select(Decision.promotion, func.sum(Decision.promotion_reserved_minor), func.count())
        .where(
            Decision.promotion.in_(keys),
            Decision.settled.is_(False),
            Decision.outcome_deadline > now,
        )
        .group_by(Decision.promotion)
    )
    return {k: (int(held or 0), int(n)) for k, held, n in rows if k is not None}


def _pacing_rate(
    promotion: Promotion, usage: PromotionUsage | None, held: int, now: datetime
) -> float | None:
    """Expected spend allowed per eligible decision (Ferreira et al.'s TS-update rate)."""
    if not promotion.paced or usage is None:
        return None
    assert promotion.budget_minor is not None and promotion.ends_at is not None
    # Open offers redeem at the rate seen so far (Laplace-smoothed), so count that share.
    redeem_share = (usage.redemptions + 1) / (usage.settled_offers + 2)
    remaining = promotion.budget_minor - usage.spent_minor - held * redeem_share
    seconds_left = (promotion.ends_at - now).total_seconds()
    if usage.first_eligible_at is None or usage.eligible_visits == 0:
        return float("inf")  # no traffic seen yet: nothing to pace on (hard caps still hold)
    elapsed = max((now - usage.first_eligible_at).total_seconds(), 60.0)
    expected = usage.eligible_visits / elapsed * max(seconds_left, 0.0)
    return spend_rate(remaining, max(expected, 1.0))


def _period_start(promotion: Promotion, now: datetime) -> datetime:
    if promotion.per_customer_period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return promotion.starts_at or datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class _State:
    promotion: Promotion
    free_budget: int | None
    offers_left: int | None
    customer_left: int | None
    rate: float | None
    eligible_lines: int = 0


@dataclass
class OfferBook:
    """The offers a quote may make, kept consistent across the lines of one cart.

    Built inside the quote transaction by :meth:`open`, which locks the usage rows of the
    capped promotions; :meth:`offers_for` gives a line its offers and :meth:`take` books
    the chosen one, so later lines see what is left; :meth:`close` records eligible traffic.
    """

    promotions: list[Promotion]
    states: dict[str, _State] = field(default_factory=dict)
    taken: list[Promotion] = field(default_factory=list)

    @classmethod
    def open(
        cls, session: Session, *, promotions: list[Promotion], customer_id: str, now: datetime
    ) -> OfferBook:
        """Lock and read the usage of every capped promotion (sorted keys: no deadlock)."""
        book = cls(promotions)
        capped = sorted(p.key for p in promotions if p.capped or p.paced)
        usage: dict[str, PromotionUsage] = {}
        if capped:
            usage = {
                u.key: u
                for u in session.scalars(
                    select(PromotionUsage).where(PromotionUsage.key.in_(capped))
                    .order_by(PromotionUsage.key).with_for_update()
                )
            }  # fmt: skip
        holds = _open_holds(session, capped, now) if capped else {}
        per_customer = [p for p in promotions if p.per_customer_limit is not None]
        counts: dict[str, int] = {}
        if per_customer:
            since = min(_period_start(p, now) for p in per_customer)
            rows = session.execute(
                select(Decision.promotion, Decision.created_at).where(
                    Decision.customer_id == customer_id,
                    Decision.promotion.in_([p.key for p in per_customer]),
                    Decision.created_at >= since,
                    Decision.redeemed.is_(True)
                    | (Decision.settled.is_(False) & (Decision.outcome_deadline > now)),
                )
            )
            starts = {p.key: _period_start(p, now) for p in per_customer}
            for key, created in rows:
                if key is not None and created >= starts[key]:
                    counts[key] = counts.get(key, 0) + 1
        for p in promotions:
            u = usage.get(p.key)
            held, open_offers = holds.get(p.key, (0, 0))
            spent = u.spent_minor if u else 0
            redemptions = u.redemptions if u else 0
            book.states[p.key] = _State(
                p,
                None if p.budget_minor is None else p.budget_minor - spent - held,
                None if p.redemption_cap is None else p.redemption_cap - redemptions - open_offers,
                None
                if p.per_customer_limit is None
                else p.per_customer_limit - counts.get(p.key, 0),
                _pacing_rate(p, u, held, now),
            )
        return book

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
        """Offers for one line: eligible, within every limit, compatible with the cart."""
        out = []
        exclusive_taken = any(p.exclusive for p in self.taken)
        for p in self.promotions:
            if p.ineligibility(segment=segment, sku=sku, category=category, currency=currency,
                               cart_value_minor=cart_value_minor, channel=channel, now=now):  # fmt: skip
                continue
            state = self.states[p.key]
            state.eligible_lines += 1
            others = [t for t in self.taken if t.key != p.key]
            if others and (p.exclusive or exclusive_taken):
                continue  # an exclusive promotion is never combined with another one
            if state.offers_left is not None and state.offers_left <= 0:
                continue
            if state.customer_left is not None and state.customer_left <= 0:
                continue
            if state.free_budget is not None and state.free_budget <= p.cost_minor:
                continue
            rate = state.rate if state.rate is not None and state.rate != float("inf") else None
            out.append(Offer(p, state.free_budget, rate))
        return tuple(out)

    def take(self, key: str, reserve_minor: int) -> None:
        """Book an offer made on a line: its hold, one offer and one customer use."""
        state = self.states[key]
        if state.free_budget is not None:
            state.free_budget -= reserve_minor
        if state.offers_left is not None:
            state.offers_left -= 1
        if state.customer_left is not None:
            state.customer_left -= 1
        self.taken.append(state.promotion)

    def close(self, session: Session, now: datetime) -> None:
        """Count eligible lines (the pacing LP's traffic estimate) in the usage rows."""
        for key, state in self.states.items():
            if state.eligible_lines and state.promotion.paced:
                session.execute(
                    update(PromotionUsage)
                    .where(PromotionUsage.key == key)
                    .values(
                        eligible_visits=PromotionUsage.eligible_visits + state.eligible_lines,
                        first_eligible_at=func.coalesce(PromotionUsage.first_eligible_at, now),
                    )
                )


# --------------------------------------------------------------------------- outcomes
def settle(session: Session, decision: Decision, *, converted: bool, discount_minor: int) -> None:
    """Settle an offer's hold when its outcome is stored (same transaction as the outcome)."""
    if decision.promotion is None:
        return
    # Plain UPDATEs: synchronising the session's loaded objects made batch ingestion
    # quadratic (promoted outcomes x decisions loaded), found by benchmarks/systems.py.
    plain = {"synchronize_session": False}
    session.execute(
        update(Decision)
        .where(Decision.id == decision.id)
        .values(settled=True, redeemed=converted)
        .execution_options(**plain)
    )
    session.execute(
        update(PromotionUsage)
        .where(PromotionUsage.key == decision.promotion)
        .values(
            spent_minor=PromotionUsage.spent_minor + discount_minor,
            redemptions=PromotionUsage.redemptions + int(converted),
            settled_offers=PromotionUsage.settled_offers + 1,
        )
        .execution_options(**plain)
    )


def outcome_discount(decision: Decision, *, converted: bool, quantity: int,
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
