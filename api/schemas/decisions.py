"""``/v1/decisions``: the decision log, with outcomes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from api.schemas.common import Money
from api.schemas.outcomes import OutcomePublic


class DecisionPublic(BaseModel):
    """A logged decision and, once reported, its outcome."""

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
    promotion: str | None
    promotion_version: int | None
    discount: Money
    promotion_cost: Money
    promotion_reserved: Money
    channel: str | None
    context_key: str
    outcome_deadline: datetime | None
    settled: bool
    redeemed: bool
    propensity: float
    personalized: bool
    policy: str
    model_version: str | None
    experiment_variant: str | None
    jurisdiction: str | None
    context: dict[str, Any]
    guardrail_trail: dict[str, Any]
    outcome: OutcomePublic | None


class DecisionPage(BaseModel):
    """Decisions oldest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[DecisionPublic]
    next_after: str | None
