"""Quotes: price each cart line and log every decision, in the transaction that returns it."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from api.errors import ApiError, FieldProblem
from api.orm import (
    Decision,
    DecisionAssignment,
    ExperimentExposure,
    Outcome,
    Product,
    Segment,
    utcnow,
)
from api.schemas import QuoteLinePublic, QuoteRequest, QuoteResponse
from api.services.experiments import QuoteExperiment
from api.services.promotions import OfferBook, load_active
from pricing.context import ContextSchema
from pricing.money import from_minor
from pricing.policy import LineContext, PriceDecision, PricePolicy

__all__ = ["create_quote"]

log = logging.getLogger("pricing.quotes")


def _price_history(
    session: Session, skus: set[str], since: datetime
) -> dict[str, tuple[int, int, int]]:
    """(last, lowest, highest) price served since ``since`` per SKU, to any segment.

    The last price feeds the per-period change cap; the range the cross-segment spread
    cap. Every segment's prices count, the line's own segment's included: otherwise one
    segment could drift away while the others stand still (found by the API test). One
    statement, answered from the covering index ``ix_decisions_sku_time_price``.
    """
    later = aliased(Decision)
    last = (
        select(later.price_minor)
        .where(later.sku == Decision.sku, later.created_at >= since)
        .order_by(later.created_at.desc(), later.price_minor.desc())
        .limit(1)
        .correlate(Decision)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Decision.sku, last, func.min(Decision.price_minor), func.max(Decision.price_minor))
        .where(Decision.sku.in_(skus), Decision.created_at >= since)
        .group_by(Decision.sku)
    )
    return {sku: (int(lp), int(lo), int(hi)) for sku, lp, lo, hi in rows}


def _sticky(
    session: Session, customer_id: str, skus: set[str], now: datetime
) -> dict[str, Decision]:
    """Unexpired decisions for this customer and these SKUs (newest per SKU)."""
    rows = session.scalars(
        select(Decision)
        .where(
            Decision.customer_id == customer_id, Decision.sku.in_(skus), Decision.expires_at > now
        )
        .order_by(Decision.created_at)
    )
    return {d.sku: d for d in rows}


def _record_assignments(
    session: Session,
    experiment: QuoteExperiment,
    unit_id: str,
    decisions: list[Decision],
    now: datetime,
) -> None:
    """Each decision's variants, and the unit's first exposure per experiment (once)."""
    session.add_all(
        DecisionAssignment(decision_id=d.id, experiment_key=key, variant=variant)
        for d in decisions
        for key, variant in experiment.assignments
    )
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        module.insert(ExperimentExposure).on_conflict_do_nothing(
            index_elements=["experiment_key", "unit_id"]
        ),
        [{"experiment_key": key, "unit_id": unit_id, "variant": variant, "first_seen_at": now}
         for key, variant in experiment.assignments],
    )  # fmt: skip


def _line_from(decision: Decision, line_no: int) -> QuoteLinePublic:
    trail = decision.guardrail_trail or {}
    return QuoteLinePublic(
        line_no=line_no,
        sku=decision.sku,
        quantity=decision.quantity,
        currency=decision.currency,
        list_price=from_minor(decision.list_price_minor, decision.currency),
        price=from_minor(decision.price_minor, decision.currency),
        decision_id=decision.id,
        propensity=decision.propensity,
        personalized=decision.personalized,
        fallback=bool(trail.get("fallback", False)),
        reasons=list(trail.get("reasons", [])),
        promotion=decision.promotion,
        discount=from_minor(decision.discount_minor, decision.currency),
        final_price=from_minor(decision.price_minor - decision.discount_minor, decision.currency),
    )


def create_quote(
    session: Session,
    *,
    request: QuoteRequest,
    policy: PricePolicy,
    default_segment: str,
    ttl: timedelta,
    guardrail_version: int | None = None,
    outcome_window: timedelta | None = None,
    context_schema: ContextSchema | None = None,
    experiment: QuoteExperiment | None = None,
) -> QuoteResponse:
    """Price every line of ``request`` and log one decision per line.

    The decisions are committed before this returns, so a price is never shown that is
    not in the log.

    Parameters
    ----------
    session : Session
        A session with no open transaction.
    request : QuoteRequest
        Validated request.
    policy : PricePolicy
        Decides each line's price and propensity.
    default_segment : str
        Segment used when the request names none.
    ttl : timedelta
        How long the quote is valid. A SKU quoted to the same customer before its
        ``expires_at`` keeps its price: the earlier decision is returned again.
    guardrail_version : int, optional
        Guardrail version in force, recorded in each decision's trail.
    outcome_window : timedelta, optional
        Outcome window (default: the TTL); sets each decision's ``outcome_deadline``.
    context_schema : ContextSchema, optional
        Declared context features; each decision stores their values as ``context_key``.
    experiment : QuoteExperiment, optional
        The customer's assignments in running experiments: recorded with each decision
        (and the first exposure per experiment); a control gets no promotions, a holdout's
        decisions are not learned from. ``policy`` must already be the variant's policy.

    Raises
    ------
    ApiError
        422 naming ``segment`` when it is unknown or inactive, and ``lines[i].sku`` for
        each unknown or inactive SKU.
    """
    segment_key = request.segment or default_segment
    skus = {line.sku for line in request.lines}
    now = utcnow()
    with session.begin():
        segment = session.get(Segment, segment_key)
        products = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_(skus)))}
        problems = []
        if segment is None or not segment.active:
            state = "unknown" if segment is None else "inactive"
            problems.append(FieldProblem(["body", "segment"], f"{state} segment {segment_key!r}"))
        for index, line in enumerate(request.lines):
            product = products.get(line.sku)
            if product is None or not product.active:
                state = "unknown" if product is None else "inactive"
                problems.append(
                    FieldProblem(["body", "lines", index, "sku"], f"{state} sku {line.sku!r}")
                )
        if problems:
            raise ApiError(422, problems)

        allowed = request.consent is None or request.consent.personalization
        quote_id = uuid.uuid4()
        expires_at = now + ttl
        sticky = _sticky(session, request.customer_id, skus, now) if allowed else {}
        reported = (
            set(
                session.scalars(
                    select(Outcome.decision_id).where(
                        Outcome.decision_id.in_([d.id for d in sticky.values()])
                    )
                )
            )
            if sticky
            else set()
        )
        period_start = now.replace(
            hour=0, minute=0, second=0, microsecond=0
        )  # guardrail period: UTC day
        history = _price_history(session, skus, period_start)
        window = outcome_window or ttl
        schema = context_schema or ContextSchema()
        context_key = schema.key(request.context)
        offers_allowed = allowed and not (experiment is not None and experiment.control)
        promotions = load_active(session) if offers_allowed else []
        book = (
            OfferBook.open(session, promotions=promotions, customer_id=request.customer_id, now=now)
            if promotions
            else None
        )
        cart_value: dict[str, int] = {}
        for line in request.lines:
            product = products[line.sku]
            cart_value[product.currency] = (
                cart_value.get(product.currency, 0) + product.list_price_minor * line.quantity
            )
        out_lines = []
        decisions = []
        for index, line in enumerate(request.lines):
            product = products[line.sku]
            previous = sticky.get(product.sku)
            if previous is not None and previous.segment != segment_key:
                previous = None
            if (
                previous is not None
                and previous.id not in reported
                and previous.quantity == line.quantity
            ):
                out_lines.append(_line_from(previous, index))
                continue
            context = LineContext(
                segment=segment_key,
                sku=product.sku,
                category=product.category,
                currency=product.currency,
                list_price_minor=product.list_price_minor,
                unit_cost_minor=product.unit_cost_minor,
                quantity=line.quantity,
                personalization_allowed=allowed,
                features=request.context,
                last_price_minor=history[product.sku][0] if product.sku in history else None,
                other_segment_prices=history[product.sku][1:] if product.sku in history else None,
                offers=book.offers_for(
                    segment=segment_key, sku=product.sku, category=product.category,
                    currency=product.currency, cart_value_minor=cart_value[product.currency],
                    channel=request.channel, now=now,
                ) if book is not None and previous is None else (),
            )  # fmt: skip
            try:
                if previous is not None:
                    # Same price until the earlier quote expires; a new decision, so a second
                    # purchase is counted. Not a policy choice: propensity 1, policy "sticky/1".
                    decision = PriceDecision(previous.price_minor, 1.0, previous.personalized, "sticky/1",
                                             ("sticky_quote",), previous.model_version, False, 1)  # fmt: skip
                else:
                    decision = policy.decide(context)
            except Exception:  # a failing model never fails checkout: list price, flagged
                log.exception("price policy failed for %s; serving the list price", product.sku)
                decision = PriceDecision(product.list_price_minor, 1.0, False, "fallback", ("policy_error",),
                                         None, True, 1)  # fmt: skip
            if decision.promotion is not None:
                assert book is not None
                book.take(decision.promotion, decision.reserve_minor)
            decision_id = uuid.uuid4()
            row = Decision(
                id=decision_id,
                quote_id=quote_id,
                line_no=index,
                created_at=now,
                expires_at=previous.expires_at if previous is not None else expires_at,
                customer_id=request.customer_id,
                segment=segment_key,
                sku=product.sku,
                quantity=line.quantity,
                currency=product.currency,
                list_price_minor=product.list_price_minor,
                price_minor=decision.price_minor,
                unit_cost_minor=product.unit_cost_minor,
                promotion=decision.promotion,
                promotion_version=decision.promotion_version,
                discount_minor=decision.discount_minor,
                promotion_cost_minor=decision.promotion_cost_minor,
                promotion_reserved_minor=decision.reserve_minor,
                outcome_deadline=now + window,
                context_key=context_key,
                channel=request.channel,
                settled=False,
                redeemed=False,
                propensity=decision.propensity,
                personalized=decision.personalized,
                policy=decision.policy,
                model_version=decision.model_version,
                experiment_variant=experiment.label if experiment is not None else None,
                learn=not (experiment is not None and experiment.holdout),
                jurisdiction=request.jurisdiction,
                context=dict(request.context),
                guardrail_trail={
                    "reasons": list(decision.reasons),
                    "fallback": decision.fallback,
                    "guardrail_version": guardrail_version,
                    "candidates": decision.candidates,
                },
            )
            decisions.append(row)
            out_lines.append(_line_from(row, index))
        if book is not None:
            book.close(session, now)
        session.add_all(decisions)
        if experiment is not None and experiment.assignments:
            session.flush()
            _record_assignments(session, experiment, request.customer_id, decisions, now)
    return QuoteResponse(
        quote_id=quote_id,
        customer_id=request.customer_id,
        segment=segment_key,
        expires_at=expires_at,
        personalized=any(line.personalized for line in out_lines),
        lines=out_lines,
    )
