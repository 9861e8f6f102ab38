"""Guardrail what-if: off-policy estimate of profit per decision under proposed guardrails.

The evaluation policy is the engine (Thompson sampling with the current posterior and
exploration floor) restricted to the proposed guardrails' price ladder, without
promotions. It is evaluated on the recent logged decisions that a stochastic policy chose
(forced rows, with propensity 1 by construction, are left out) with IPS, SNIPS and DR
(:mod:`experiments.ope`; the DR reward model is the posterior mean). The same estimate under
the *current* guardrails is returned next to it, so the difference isolates the change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.orm import Decision, Outcome, Product, utcnow
from api.schemas.guardrails import EstimateOut, WhatIfOut
from experiments.ope import evaluate
from pricing.context import ContextSchema
from pricing.guardrails import GuardrailSet, ProductFacts
from pricing.money import CURRENCY_EXPONENTS
from pricing.posterior import DemandPosterior
from pricing.thompson import choice_probabilities

__all__ = ["what_if"]


def _rows(session: Session, limit: int) -> list[tuple[Decision, Outcome | None, Product]]:
    now = utcnow()
    query = (
        select(Decision, Outcome, Product)
        .outerjoin(Outcome, Outcome.decision_id == Decision.id)
        .join(Product, Product.sku == Decision.sku)
        # The policy's own random choices (a model choice may land on the list price and so
        # not be "personalized"; fixed rules, repeats and fallbacks have propensity 1).
        .where(Decision.propensity < 1.0)
        .order_by(Decision.created_at.desc())
        .limit(limit)
    )
    out: list[tuple[Decision, Outcome | None, Product]] = []
    for decision, outcome, product in session.execute(query):
        if outcome is None and (
            decision.outcome_deadline is None or decision.outcome_deadline > now
        ):
            continue  # reward not known yet
        out.append((decision, outcome, product))
    return out


def _estimates(
    rows: list[tuple[Decision, Outcome | None, Product]],
    rules: GuardrailSet,
    posterior: DemandPosterior,
    epsilon: float,
    n_prices: int,
    schema: ContextSchema,
    floor: float | None = None,
) -> tuple[list[EstimateOut], float]:
    ladders: dict[str, tuple[np.ndarray, Any]] = {}
    n = len(rows)
    per_round: list[tuple[np.ndarray, np.ndarray, int]] = []
    rewards = np.zeros(n)
    pscores = np.zeros(n)
    for i, (d, outcome, product) in enumerate(rows):
        scale = 10 ** CURRENCY_EXPONENTS.get(d.currency, 2)
        if outcome is not None and outcome.converted:
            rewards[i] = (outcome.revenue_minor - d.unit_cost_minor * outcome.quantity
                          - d.promotion_cost_minor) / scale  # fmt: skip
        pscores[i] = d.propensity
        if d.sku not in ladders:
            facts = ProductFacts(d.sku, product.category, d.list_price_minor, d.unit_cost_minor)
            ladders[d.sku] = rules.feasible_prices(facts, n_max=n_prices)
        prices = ladders[d.sku][0]
        logged_price = d.price_minor - d.discount_minor
        in_ladder = np.flatnonzero((prices == d.price_minor) & (d.promotion is None))
        candidates = prices if len(in_ladder) else np.append(prices, logged_price)
        logged = int(in_ladder[0]) if len(in_ladder) else len(candidates) - 1
        offset = (
            posterior.context_offset(_context(schema, d.context_key)) if d.context_key else None
        )
        p_buy = posterior.conversion_probability(
            d.segment, d.sku, candidates / d.list_price_minor, category=product.category,
            promotion=d.promotion if not len(in_ladder) else None, offset=offset,
        )  # fmt: skip
        margin = (candidates - d.unit_cost_minor).astype(float) * d.quantity / scale
        weights = posterior.decision_weights(d.segment, d.sku)
        probs = np.zeros(len(candidates))
        if len(prices):
            probs[: len(prices)] = choice_probabilities(
                p_buy[:, : len(prices)] * margin[None, : len(prices)], weights, epsilon,
                floor=floor,
            )
        q_hat = weights @ (p_buy * margin[None, :])
        per_round.append((probs, q_hat, logged))
    width = max(len(p) for p, _, _ in per_round)
    action_dist = np.zeros((n, width, 1))
    q = np.zeros((n, width, 1))
    action = np.zeros(n, dtype=np.int64)
    for i, (probs, q_hat, logged) in enumerate(per_round):
        action_dist[i, : len(probs), 0] = probs
        q[i, : len(q_hat), 0] = q_hat
        action[i] = logged
    results = evaluate(
        rewards, action, pscores, action_dist, estimated_rewards_by_reg_model=q,
        estimators=("ips", "snips", "dr"), ci="clt",
    )  # fmt: skip
    out = [
        EstimateOut(
            estimator=r.estimator,
            value=r.value,
            lower=r.lower,
            upper=r.upper,
            ess=r.ess,
            max_weight=r.max_weight,
            warnings=list(r.warnings),
        )
        for r in results.values()
    ]
    return out, float(rewards.mean())


def _context(schema: ContextSchema, key: str) -> dict[str, object]:
    import json

    try:
        value = json.loads(key)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def what_if(
    session: Session,
    *,
    proposed: GuardrailSet,
    current: GuardrailSet,
    served: Callable[[], DemandPosterior | None],
    epsilon: float,
    n_prices: int,
    limit: int = 5000,
    floor: float | None = None,
) -> WhatIfOut:
    """OPE of the proposed and current guardrails on the newest ``limit`` logged decisions."""
    posterior = served()
    if posterior is None:
        return WhatIfOut(rounds=0, currency=None, logged_profit_per_decision=None, proposed=[],
                         current=[], message="no demand model is served yet: nothing to evaluate with")  # fmt: skip
    rows = _rows(session, limit)
    if len(rows) < 2:
        # An interval needs at least two rounds (what_if_rounds may be 1).
        return WhatIfOut(
            rounds=len(rows), currency=None, logged_profit_per_decision=None, proposed=[],
            current=[], message="fewer than 2 logged model decisions with a known outcome: "
            "nothing to estimate an interval from",
        )  # fmt: skip
    currencies = {d.currency for d, _, _ in rows}
    schema = ContextSchema.from_dict(posterior.meta.get("context_schema"))
    new, logged = _estimates(rows, proposed, posterior, epsilon, n_prices, schema, floor)
    old, _ = _estimates(rows, current, posterior, epsilon, n_prices, schema, floor)
    message = f"{len(rows)} logged decisions; profit per decision in currency units"
    if len(currencies) > 1:
        message += f" (mixed currencies {sorted(currencies)}: sums are not comparable)"
    return WhatIfOut(
        rounds=len(rows), currency=next(iter(currencies)) if len(currencies) == 1 else None,
        logged_profit_per_decision=logged, proposed=new, current=old, message=message,
    )  # fmt: skip
