"""Preview of a proposed guardrail set: what the policy would serve under it, nothing activated.

Per segment and SKU, the price distribution Thompson sampling (with the exploration floor)
would serve under the proposal, with expected conversion and profit per visitor under the
current posterior; optionally an off-policy what-if on the logged decisions
(:mod:`api.services.whatif`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Invalid
from api.orm import Product, Segment
from api.posterior_cache import Served
from api.schemas.guardrails import PreviewIn, PreviewLine, PreviewOut
from api.services.guardrails import compile_rules, money_text
from api.services.whatif import what_if
from pricing.guardrails import GuardrailSet, ProductFacts
from pricing.thompson import choice_probabilities

__all__ = ["preview_guardrails"]


def preview_guardrails(
    session: Session,
    body: PreviewIn,
    *,
    served: Served | None,
    epsilon: float,
    n_prices: int,
    current: GuardrailSet,
    floor: float | None = None,
) -> PreviewOut:
    """Preview ``body`` under the served posterior.

    Parameters
    ----------
    body : PreviewIn
        The proposal, and which SKUs (at most 200 active ones by default) and segments.
    served : Served or None
        The posterior in service (None: nothing personalized, list prices everywhere).
    epsilon, floor : float
        The policy's share of exploration and its uniform part (pricing/thompson.py;
        ``floor`` None: all uniform).
    n_prices : int
        Largest price ladder per SKU.
    current : GuardrailSet
        The guardrails in force, for the what-if's side-by-side estimate.

    Raises
    ------
    Invalid
        The proposal does not fit the catalog (see :func:`compile_rules`), or naming
        ``skus`` for unknown or inactive SKUs.
    """
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
    lines: list[PreviewLine] = []
    for product in products:
        facts = ProductFacts(
            product.sku, product.category, product.list_price_minor, product.unit_cost_minor
        )
        prices, binding = rules.feasible_prices(facts, n_max=n_prices)
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
                weights = post.decision_weights(segment, product.sku)
                probs = choice_probabilities(p_buy * margin[None, :], weights, epsilon,
                                             floor=floor)  # fmt: skip
                mean_p = weights @ p_buy
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
            session, proposed=rules, current=current,
            served=lambda: served.posterior if served is not None else None, epsilon=epsilon,
            n_prices=n_prices, limit=body.what_if_rounds, floor=floor,
        )  # fmt: skip
    return PreviewOut(
        model_version=served.snapshot_id if served else None, epsilon=epsilon, lines=lines,
        what_if=estimate,
    )  # fmt: skip

