"""Merchandisers: guardrails, the kill switch, and previews of a proposed change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api.deps import SessionDep, StateDep, require
from api.errors import Invalid
from api.orm import Product, Segment
from api.schemas.guardrails import (
    GuardrailSetIn,
    GuardrailsPublic,
    PreviewIn,
    PreviewLine,
    PreviewOut,
)
from api.security import Principal, Role
from api.services.guardrails import active_guardrails, compile_rules, money_text, put_guardrails
from api.services.whatif import what_if
from pricing.guardrails import ProductFacts
from pricing.thompson import choice_probabilities

router = APIRouter(prefix="/v1", tags=["merchandiser"])
Merchandiser = Annotated[Principal, Depends(require(Role.MERCHANDISER))]
Reader = Annotated[Principal, Depends(require(Role.MERCHANDISER, Role.ANALYST))]


@router.get("/guardrails", response_model=GuardrailsPublic | None)
def get_guardrails(session: SessionDep, _: Reader) -> GuardrailsPublic | None:
    """The guardrails in effect (null when none were ever set)."""
    return active_guardrails(session)


@router.put("/guardrails", response_model=GuardrailsPublic)
def set_guardrails(
    body: GuardrailSetIn, session: SessionDep, state: StateDep, actor: Merchandiser
) -> GuardrailsPublic:
    """Replace the guardrails with a new version (validated against the catalog, audited)."""
    stored = put_guardrails(session, body=body, actor=actor)
    state.guardrails.invalidate()
    return stored


@router.post("/guardrails/preview", response_model=PreviewOut)
def preview(body: PreviewIn, session: SessionDep, state: StateDep, _: Merchandiser) -> PreviewOut:
    """Per segment and SKU: the price distribution the policy would serve under the proposal,
    with expected conversion and profit per visitor under the current posterior."""
    rules, _stored = compile_rules(session, body)
    query = select(Product).where(Product.active.is_(True)).order_by(Product.sku).limit(200)
    if body.skus is not None:
        query = query.where(Product.sku.in_(body.skus))
    products = list(session.scalars(query))
    if body.skus is not None and len(products) != len(set(body.skus)):
        unknown = sorted(set(body.skus) - {p.sku for p in products})
        raise Invalid(["body", "skus"], f"unknown or inactive sku(s): {', '.join(unknown)}")
    segments = body.segments or list(
        session.scalars(select(Segment.key).where(Segment.active.is_(True)))
    )
    served = state.posterior.served
    epsilon = state.settings.exploration_epsilon
    lines: list[PreviewLine] = []
    for product in products:
        facts = ProductFacts(
            product.sku, product.category, product.list_price_minor, product.unit_cost_minor
        )
        prices, binding = rules.feasible_prices(facts, n_max=state.settings.price_ladder_size)
        personalized = rules.personalization_allowed(facts) and served is not None
        for segment in segments:
            entry: dict[str, Any] = {"segment": segment, "sku": product.sku, "currency": product.currency,
                                     "binding": binding, "personalized": personalized}  # fmt: skip
            if not personalized or served is None:
                entry.update(prices=[money_text(product.list_price_minor, product.currency)], probabilities=[1.0],
                             expected_conversion=None, expected_profit_per_visitor=None)  # fmt: skip
            else:
                post = served.posterior
                p_buy = post.conversion_probability(segment, product.sku, prices / product.list_price_minor,
                                                    category=product.category)  # fmt: skip
                margin = (prices - product.unit_cost_minor).astype(float)
                probs = choice_probabilities(p_buy * margin[None, :], post.weights, epsilon)
                mean_p = post.weights @ p_buy
                entry.update(
                    prices=[money_text(int(p), product.currency) for p in prices],
                    probabilities=probs.round(6).tolist(),
                    expected_conversion=float(probs @ mean_p),
                    expected_profit_per_visitor=money_text(
                        round(float(probs @ (mean_p * margin))), product.currency
                    ),
                )
            lines.append(PreviewLine(**entry))
    estimate = None
    if body.what_if_rounds:
        estimate = what_if(
            session, proposed=rules, current=state.guardrails.get()[1],
            served=lambda: served.posterior if served is not None else None, epsilon=epsilon,
            n_prices=state.settings.price_ladder_size, limit=body.what_if_rounds,
        )  # fmt: skip
    return PreviewOut(
        model_version=served.snapshot_id if served else None, epsilon=epsilon, lines=lines,
        what_if=estimate,
    )  # fmt: skip


__all__ = ["router"]
