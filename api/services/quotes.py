"""Quotes: price each cart line and log every decision, in the transaction that returns it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError, FieldProblem
from api.orm import Decision, Product, Segment, utcnow
from api.schemas import QuoteLinePublic, QuoteRequest, QuoteResponse
from pricing.money import from_minor
from pricing.policy import LineContext, PricePolicy

__all__ = ["create_quote"]


def create_quote(
    session: Session,
    *,
    request: QuoteRequest,
    policy: PricePolicy,
    default_segment: str,
    ttl: timedelta,
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
        How long the quote is valid.

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
        out_lines = []
        decisions = []
        for index, line in enumerate(request.lines):
            product = products[line.sku]
            decision = policy.decide(
                LineContext(
                    segment=segment_key,
                    sku=product.sku,
                    category=product.category,
                    currency=product.currency,
                    list_price_minor=product.list_price_minor,
                    unit_cost_minor=product.unit_cost_minor,
                    quantity=line.quantity,
                    personalization_allowed=allowed,
                    features=request.context,
                )
            )
            decision_id = uuid.uuid4()
            decisions.append(
                Decision(
                    id=decision_id,
                    quote_id=quote_id,
                    line_no=index,
                    created_at=now,
                    expires_at=expires_at,
                    customer_id=request.customer_id,
                    segment=segment_key,
                    sku=product.sku,
                    quantity=line.quantity,
                    currency=product.currency,
                    list_price_minor=product.list_price_minor,
                    price_minor=decision.price_minor,
                    unit_cost_minor=product.unit_cost_minor,
                    promotion=None,
                    propensity=decision.propensity,
                    personalized=decision.personalized,
                    policy=decision.policy,
                    model_version=decision.model_version,
                    experiment_variant=None,
                    jurisdiction=request.jurisdiction,
                    context=dict(request.context),
                    guardrail_trail={
                        "reasons": list(decision.reasons),
                        "fallback": decision.fallback,
                    },
                )
            )
            out_lines.append(
                QuoteLinePublic(
                    line_no=index,
                    sku=product.sku,
                    quantity=line.quantity,
                    currency=product.currency,
                    list_price=from_minor(product.list_price_minor, product.currency),
                    price=from_minor(decision.price_minor, product.currency),
                    decision_id=decision_id,
                    propensity=decision.propensity,
                    personalized=decision.personalized,
                    fallback=decision.fallback,
                    reasons=list(decision.reasons),
                )
            )
        session.add_all(decisions)
    return QuoteResponse(
        quote_id=quote_id,
        customer_id=request.customer_id,
        segment=segment_key,
        expires_at=expires_at,
        personalized=any(line.personalized for line in out_lines),
        lines=out_lines,
    )
