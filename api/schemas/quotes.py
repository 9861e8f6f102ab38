"""``POST /v1/quotes``: a cart to price, and the prices (with their propensities) served."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

from api.schemas.common import (
    EXAMPLE_DECISION,
    Money,
    SegmentKey,
    SkuId,
    StrictBody,
)
from pricing.protected import protected_attribute

MAX_QUOTE_LINES = 100


def _context_value(value: Any) -> str | bool | int | float:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= 256:
        return value
    raise ValueError(
        "a context value is a string (at most 256 characters), a finite number or a boolean"
    )


#: A context feature value: string, number or boolean (nothing nested).
ContextValue = Annotated[
    Any,
    PlainValidator(_context_value),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "number"}, {"type": "boolean"}]}
    ),
]


def _not_protected(key: str) -> str:
    reason = protected_attribute(key)
    if reason is not None:
        raise ValueError(
            f"context feature {key!r} is a protected attribute ({reason}); "
            "prices are never conditioned on it"
        )
    return key


#: A context feature name: an identifier that does not denote a protected attribute.
ContextKey = Annotated[
    str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$"), AfterValidator(_not_protected)
]


class Consent(StrictBody):
    """What the customer agreed to; without consent to personalization, list price is served."""

    personalization: StrictBool = True


class QuoteLineIn(StrictBody):
    """One cart line to price."""

    sku: SkuId
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)] = 1


class QuoteRequest(StrictBody):
    """``POST /v1/quotes``: price every line of a cart for one customer."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customer_id": "c-43", "segment": "loyalty", "channel": "web",
        "lines": [{"sku": "COF-001", "quantity": 1}, {"sku": "TEA-002", "quantity": 2}],
    }]})  # fmt: skip

    customer_id: Annotated[str, Field(min_length=1, max_length=128, examples=["c-43"])]
    segment: SegmentKey | None = None
    context: Annotated[dict[ContextKey, ContextValue], Field(max_length=50)] = Field(
        default_factory=dict
    )
    lines: Annotated[list[QuoteLineIn], Field(min_length=1, max_length=MAX_QUOTE_LINES)]
    jurisdiction: Annotated[str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")] | None = None
    consent: Consent | None = None
    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$", examples=["web"])] | None = (
        None
    )


class QuoteLinePublic(BaseModel):
    """The priced line. ``propensity`` is the probability the policy had of this
    (price, promotion) pair. With a promotion the customer pays ``final_price`` per unit
    (``price - discount``); free shipping leaves the price as it is."""

    line_no: int
    sku: str
    quantity: int
    currency: str
    list_price: Money
    price: Money
    decision_id: UUID
    propensity: float
    personalized: bool
    fallback: bool
    reasons: list[str]
    promotion: str | None = None
    discount: Money = Decimal(0)
    final_price: Money | None = None
    #: The jurisdiction's required statement, on every personalized line where one applies
    #: (e.g. New York's "THIS PRICE WAS SET BY AN ALGORITHM USING YOUR PERSONAL DATA").
    disclosure: str | None = None
    #: Where the EU prior-price rule applies and the line announces a reduction (a
    #: promotion, or a price below list): the lowest price paid for the SKU in the 30 UTC
    #: days before today (the list price if it did not sell then).
    reference_price: Money | None = None
    #: The announced reduction in percent, computed from ``reference_price`` (rounded down
    #: to 0.1 %); None when the price is not below it.
    reduction_percent: Decimal | None = None
    #: The policy that decided (metrics label; not part of the response body).
    _policy: str = PrivateAttr(default="")

    @property
    def policy_name(self) -> str:
        """Name of the policy that decided this line (``sticky/1`` for a repeat)."""
        return self._policy or "sticky/1"


class QuoteResponse(BaseModel):
    """``POST /v1/quotes`` response: one decision per line, valid until ``expires_at``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "quote_id": "0d6f3c2a-1b4e-4f5a-8c9d-7e6f5a4b3c2d", "customer_id": "c-43",
        "segment": "loyalty", "expires_at": "2026-12-02T10:15:00Z", "personalized": True,
        "lines": [{
            "line_no": 0, "sku": "COF-001", "quantity": 1, "currency": "USD",
            "list_price": "21.99", "price": "20.99", "decision_id": EXAMPLE_DECISION,
            "propensity": 0.41, "personalized": True, "fallback": False,
            "reasons": ["lp_pacing", "promotion:COFFEE10", "experiment:engine-vs-list:engine"],
            "promotion": "COFFEE10", "discount": "2.10", "final_price": "18.89",
        }],
    }]})  # fmt: skip

    quote_id: UUID
    customer_id: str
    segment: str
    expires_at: datetime
    personalized: bool
    lines: list[QuoteLinePublic]
