"""Explanations of decisions: the inputs a price was set from, the choice and its bounds.

Read from the decision's own row (what was logged when it was made, never recomputed with
today's rules or model) and, for the reference price, the SKU's daily price aggregates.
A checkout key may read the explanations of the decisions it asked for; analysts and
admins may read any.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.orm import Decision, SkuDailyPrices
from api.schemas.decisions import ExplanationOut, ExplanationPromotion
from api.security import Principal, Role
from pricing.money import from_minor

__all__ = ["explain"]

#: Days before the decision's day the reference price looks back over.
REFERENCE_DAYS = 30
#: Reasons that name how the price was chosen (the rest are guardrails or context).
_HOW = ("thompson_sampling", "lp_pacing", "exploration", "sticky_quote", "kill_switch",
        "customer_opted_out", "excluded_from_personalization", "no_demand_model",
        "no_price_within_period_caps", "policy_error", "list_price_policy")  # fmt: skip
_BOUNDS = ("list_price", "unit_cost", "positive")
_PLAIN = {
    "thompson_sampling": "chosen by Thompson sampling from the demand model",
    "lp_pacing": "chosen by Thompson sampling, with the promotion's budget paced",
    "exploration": "chosen at random among the allowed prices (exploration)",
    "sticky_quote": "repeated from an earlier quote to the same customer",
    "kill_switch": "the list price: personalization is switched off",
    "customer_opted_out": "the list price: the customer opted out of personalization",
    "excluded_from_personalization": "the list price: this product is excluded from personalization",
    "no_demand_model": "the non-personalized price: no demand model was published yet",
    "no_price_within_period_caps": "the nearest allowed price: the daily caps left no other",
    "policy_error": "the list price: the pricing model failed",
}  # fmt: skip


#: Guardrail fields that bound a price (a reason ``scope.field``, e.g. ``global.max_discount``
#: or ``sku:TEA-1.floor``).
_FIELDS = ("floor", "ceiling", "min_margin", "max_discount", "max_increase", "max_change",
           "segment_gap")  # fmt: skip


def _binding(reasons: list[str]) -> list[str]:
    return [r for r in reasons
            if r in _BOUNDS or (not r.startswith(("promotion:", "experiment:"))
                                and r.rpartition(".")[2] in _FIELDS and "." in r)]  # fmt: skip


def _reference(session: Session, decision: Decision) -> int | None:
    day = decision.created_at.date()
    return session.scalar(
        select(func.min(SkuDailyPrices.low_final_minor)).where(
            SkuDailyPrices.sku == decision.sku,
            SkuDailyPrices.day >= day - timedelta(days=REFERENCE_DAYS),
            SkuDailyPrices.day < day,
        )
    )


def explain(session: Session, decision_id: uuid.UUID, principal: Principal) -> ExplanationOut:
    """The explanation of one decision.

    Raises
    ------
    NotFound
        Unknown decision, or one a checkout key did not ask for (its existence is not
        revealed to other keys).
    """
    decision = session.get(Decision, decision_id)
    if decision is None or (
        principal.role is Role.CHECKOUT and decision.key_id != principal.key_id
    ):
        raise NotFound(["path", "decision_id"], f"unknown decision {decision_id}")
    trail: dict[str, Any] = decision.guardrail_trail or {}
    reasons = [str(r) for r in trail.get("reasons", [])]
    how = next((r for r in reasons if r in _HOW), decision.policy)
    currency = decision.currency

    def money(minor: int) -> Any:
        return from_minor(minor, currency)

    final = decision.price_minor - decision.discount_minor
    promotion = None
    if decision.promotion is not None:
        promotion = ExplanationPromotion(
            key=decision.promotion, version=decision.promotion_version,
            discount=money(decision.discount_minor), final_price=money(final),
        )  # fmt: skip
    anchor = trail.get("anchor_price_minor")
    logged = trail.get("reference_price_minor")
    reference = int(logged) if logged is not None else _reference(session, decision)
    binding = _binding(reasons)
    features = dict(decision.context or {})
    out = {
        "decision_id": decision.id, "created_at": decision.created_at, "sku": decision.sku,
        "currency": currency, "segment": decision.segment, "declared_features": features,
        "jurisdiction": decision.jurisdiction, "channel": decision.channel,
        "model_version": decision.model_version, "policy": decision.policy,
        "candidates": trail.get("candidates"), "list_price": money(decision.list_price_minor),
        "price": money(decision.price_minor), "promotion": promotion,
        "propensity": decision.propensity, "personalized": decision.personalized,
        "fallback": bool(trail.get("fallback", False)), "how": how,
        "guardrail_version": trail.get("guardrail_version"), "guardrails_binding": binding,
        "anchor_price": money(int(anchor)) if anchor is not None else None,
        "experiment_variant": decision.experiment_variant,
        "disclosure": trail.get("disclosure"),
        "reference_price": money(reference) if reference is not None else None,
    }  # fmt: skip
    out["summary"] = _summary(decision, out, how, binding)
    return ExplanationOut(**out)


def _summary(decision: Decision, out: dict[str, Any], how: str, binding: list[str]) -> str:
    c = decision.currency
    parts = [f"{decision.sku} was quoted at {out['price']} {c} (list {out['list_price']} {c}), "
             f"{_PLAIN.get(how, how)}"]  # fmt: skip
    if how in ("thompson_sampling", "lp_pacing", "exploration"):
        parts[0] += (f", with probability {decision.propensity:.3g} among "
                     f"{out['candidates']} candidate prices")  # fmt: skip
        if decision.model_version:
            parts[0] += f" (model version {decision.model_version})"
    parts[0] += "."
    inputs = [f"segment {decision.segment!r}"]
    if out["declared_features"]:
        inputs.append("declared features " + ", ".join(
            f"{k}={v}" for k, v in sorted(out["declared_features"].items())))  # fmt: skip
    if how in ("thompson_sampling", "lp_pacing", "exploration"):
        parts.append("It was decided for " + " and ".join(inputs) + (
            "; the result differs from the list price everyone gets, so it is personalized."
            if decision.personalized else
            "; it came out at the list price everyone gets, so it is not personalized."))  # fmt: skip
    else:
        parts.append("It was not personalized: the customer's data did not set it.")
    promotion = out["promotion"]
    if promotion is not None:
        parts.append(f"Promotion {promotion.key} took {promotion.discount} {c} off: "
                     f"{promotion.final_price} {c} to pay.")  # fmt: skip
    if binding:
        parts.append("Guardrails set the limit it reached: " + ", ".join(binding) + ".")
    if out["guardrail_version"] is not None:
        parts.append(f"Guardrail version {out['guardrail_version']} applied.")
    if out["reference_price"] is not None:
        parts.append(f"The lowest price paid in the 30 days before was {out['reference_price']} {c}.")
    if decision.experiment_variant:
        parts.append(f"Experiment arm: {decision.experiment_variant}.")
    return " ".join(parts)
