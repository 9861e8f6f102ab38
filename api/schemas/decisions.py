"""``/v1/decisions``: the decision log, with outcomes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from api.schemas.common import EXAMPLE_DECISION, Money
from api.schemas.outcomes import OutcomePublic

#: One logged decision of the demo (an engine price, no promotion, outcome not yet reported).
EXAMPLE_DECISION_ROW: dict[str, Any] = {
    "id": EXAMPLE_DECISION, "quote_id": "0c6f3a2e-1b4d-4e8a-9f70-2d5c8b1a6e93", "line_no": 0,
    "created_at": "2026-12-01T09:00:00Z", "expires_at": "2026-12-01T09:15:00Z",
    "customer_id": "cust-42", "segment": "loyalty", "sku": "COF-001", "quantity": 1,
    "currency": "USD", "list_price": "18.99", "price": "17.99", "unit_cost": "9.50",
    "promotion": None, "promotion_version": None, "discount": "0.00", "promotion_cost": "0.00",
    "promotion_reserved": "0.00", "channel": "web", "context_key": "", "outcome_deadline": None,
    "settled": False, "redeemed": False, "propensity": 0.41, "personalized": True,
    "policy": "thompson", "model_version": "3", "experiment_variant": None,
    "jurisdiction": "US-CA", "context": {},
    "guardrail_trail": {"reasons": ["thompson"], "fallback": False, "guardrail_version": 2,
                        "candidates": 8, "anchor_price_minor": 1799},
    "outcome": None,
}  # fmt: skip


class DecisionPublic(BaseModel):
    """A logged decision and, once reported, its outcome."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_DECISION_ROW]})

    id: uuid.UUID
    quote_id: uuid.UUID
    line_no: int
    created_at: datetime
    expires_at: datetime
    customer_id: str
    segment: str
    sku: str
    quantity: int
    currency: str
    list_price: Money
    price: Money
    unit_cost: Money
    promotion: str | None = None
    promotion_version: int | None = None
    discount: Money
    promotion_cost: Money
    promotion_reserved: Money
    channel: str | None = None
    context_key: str
    outcome_deadline: datetime | None = None
    settled: bool
    redeemed: bool
    propensity: float
    personalized: bool
    policy: str
    model_version: str | None = None
    experiment_variant: str | None = None
    jurisdiction: str | None = None
    context: dict[str, Any]
    guardrail_trail: dict[str, Any]
    outcome: OutcomePublic | None = None


class DecisionPage(BaseModel):
    """Decisions oldest first; pass ``next_after`` as ``after`` for the next page."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [EXAMPLE_DECISION_ROW],
        "next_after": "MjAyNi0xMi0wMVQwOTowMDowMCswMDowMHw1YjBmNmMxZS04ZDJhLTRjMWItOWE1Ny0zZjJlMWQwYzliOGE=",
    }]})  # fmt: skip

    items: list[DecisionPublic]
    next_after: str | None


class ExplanationPromotion(BaseModel):
    """The promotion a line carried."""

    key: str
    version: int | None = None
    discount: Money
    final_price: Money


class ExplanationOut(BaseModel):
    """Why a decision came out as it did: its inputs, the choice and what bound it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "decision_id": EXAMPLE_DECISION, "created_at": "2026-12-01T09:00:00Z", "sku": "COF-001",
        "currency": "USD", "segment": "loyalty", "declared_features": {"device": "mobile"},
        "jurisdiction": "US-CA", "channel": "web", "model_version": "3", "policy": "thompson/1",
        "candidates": 8, "list_price": "18.99", "price": "17.99", "promotion": None,
        "propensity": 0.41, "personalized": True, "fallback": False, "how": "thompson_sampling",
        "guardrail_version": 2, "guardrails_binding": ["category:coffee.max_discount"],
        "anchor_price": "17.99", "experiment_variant": None, "disclosure": None,
        "reference_price": "16.99",
        "summary": "COF-001 was quoted at 17.99 USD (list 18.99 USD) ...",
    }]})  # fmt: skip

    decision_id: uuid.UUID
    created_at: datetime
    sku: str
    currency: str
    segment: str
    #: The declared context features the decision used (empty once the customer is erased).
    declared_features: dict[str, Any]
    jurisdiction: str | None = None
    channel: str | None = None
    model_version: str | None = None
    policy: str
    #: Prices the policy chose among (the guardrail ladder, with the offers' variants).
    candidates: int | None = None
    list_price: Money
    price: Money
    promotion: ExplanationPromotion | None = None
    #: Probability with which the policy served this price and promotion.
    propensity: float
    personalized: bool
    fallback: bool
    #: ``thompson_sampling``, ``lp_pacing``, ``exploration``, a fixed rule (``kill_switch``,
    #: ``customer_opted_out``, ...) or ``sticky_quote``.
    how: str
    guardrail_version: int | None = None
    #: The guardrail rules that set the lowest or highest allowed price, when the price
    #: sits at that end (``scope:target.field``).
    guardrails_binding: list[str]
    #: The SKU's daily anchor (``max_change`` / ``segment_gap`` are measured from it).
    anchor_price: Money | None = None
    experiment_variant: str | None = None
    #: The disclosure text shown with the line, when its jurisdiction required one.
    disclosure: str | None = None
    #: The EU prior-price rule's reference: as shown with the line where the rule applied,
    #: else the lowest price paid for the SKU in the 30 UTC days before the decision's day
    #: (None when it did not sell then).
    reference_price: Money | None = None
    #: The same in plain language.
    summary: str
