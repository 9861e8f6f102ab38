"""Request and response bodies of API v1.

Money travels as decimal strings (``"19.99"``) with an explicit currency; a JSON number
in a money field is refused, since it would have passed through a binary float.
Timestamps are ISO 8601 with an offset and come back in UTC.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from pricing.money import CURRENCY_EXPONENTS, MoneyError, parse_amount, to_minor
from pricing.protected import protected_attribute

__all__ = [
    "BatchItemResult",
    "KeyCreate",
    "KeyCreated",
    "KeyPublic",
    "OutcomeBatchIn",
    "OutcomeBatchOut",
    "OutcomeIn",
    "OutcomePublic",
    "ProductImportItem",
    "ProductIn",
    "ProductPage",
    "ProductPublic",
    "QuoteLineIn",
    "QuoteLinePublic",
    "QuoteRequest",
    "QuoteResponse",
    "SegmentIn",
    "SegmentPublic",
]

MAX_QUOTE_LINES = 100
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"


def _money(value: Any) -> Decimal:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A JSON number, integer or not: JSON parsers elsewhere (JavaScript's among them)
        # read every number as a binary float, so money never travels as one.
        raise ValueError(f'money must be a decimal string such as "{value}", not a JSON number')
    try:
        return parse_amount(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


#: A money amount: accepted only as a decimal string (a JSON number, even an integer, is
#: a 422), emitted as a string. Python callers may pass a Decimal.
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}),
]
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["COF-001"])]
SkuId = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["COF-001"])]
SegmentKey = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["loyalty"])]
CategoryKey = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["coffee"])]

#: A decision id of the examples (the /docs examples use the demo catalog's SKUs and segments).
EXAMPLE_DECISION = "5b0f6c1e-8d2a-4c1b-9a57-3f2e1d0c9b8a"
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]


def _check_currency(value: str) -> str:
    if value not in CURRENCY_EXPONENTS:
        raise ValueError(f"unsupported currency {value!r}; supported: {sorted(CURRENCY_EXPONENTS)}")
    return value


class _Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not a silent default."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- catalog
class ProductIn(_Strict):
    """A product as a merchandiser sets it (``PUT /v1/products/{sku}``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "currency": "USD", "name": "Espresso beans 1kg", "category": "coffee",
        "list_price": "21.99", "unit_cost": "12.91",
    }]})  # fmt: skip

    currency: CurrencyCode
    name: Annotated[str, Field(min_length=1, max_length=200)]
    category: CategoryKey
    list_price: Money
    unit_cost: Money
    active: StrictBool = True

    _currency = field_validator("currency")(_check_currency)

    @field_validator("list_price", "unit_cost")
    @classmethod
    def _fits_currency(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        if info.field_name == "list_price" and value <= 0:
            raise ValueError("list_price must be greater than 0")
        if value < 0:
            raise ValueError(f"{info.field_name} must not be negative")
        currency = info.data.get("currency")
        if currency is not None:
            try:
                to_minor(value, currency)
            except MoneyError as exc:
                raise ValueError(str(exc)) from None
        return value


class ProductImportItem(ProductIn):
    """One product of a bulk import."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "sku": "COF-001", "currency": "USD", "name": "Espresso beans 1kg", "category": "coffee",
        "list_price": "21.99", "unit_cost": "12.91",
    }]})  # fmt: skip

    sku: SkuId


class ProductPublic(BaseModel):
    """A product as the API returns it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"sku": "COF-001", "name": "Espresso beans 1kg", "category": "coffee", "list_price": "21.99", "unit_cost": "12.91", "currency": "USD", "active": True, "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"}]})  # fmt: skip

    sku: str
    name: str
    category: str
    list_price: Money
    unit_cost: Money
    currency: str
    active: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    """A page of products, ordered by SKU; pass ``next_after`` as ``after`` for the next."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [{"sku": "COF-001", "name": "Espresso beans 1kg", "category": "coffee", "list_price": "21.99", "unit_cost": "12.91", "currency": "USD", "active": True, "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"}], "next_after": "COF-001"}]})  # fmt: skip

    items: list[ProductPublic]
    next_after: str | None = None


class ImportResult(BaseModel):
    """Outcome of a bulk import (all rows are applied, or none)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"created": 2, "updated": 0, "unchanged": 0}]})  # fmt: skip

    created: int
    updated: int
    unchanged: int


class SegmentIn(_Strict):
    """A customer segment (``PUT /v1/segments/{key}``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Loyalty members", "description": "Signed up to the loyalty programme"}
    ]})  # fmt: skip

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    active: StrictBool = True


class SegmentPublic(BaseModel):
    """A segment as the API returns it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"key": "loyalty", "name": "Loyalty members", "description": "Signed up to the loyalty programme", "active": True, "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"}]})  # fmt: skip

    key: str
    name: str
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------- quotes
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


class Consent(_Strict):
    """What the customer agreed to; without consent to personalization, list price is served."""

    personalization: StrictBool = True


class QuoteLineIn(_Strict):
    """One cart line to price."""

    sku: SkuId
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)] = 1


class QuoteRequest(_Strict):
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


# --------------------------------------------------------------------------- outcomes
class OutcomeIn(_Strict):
    """What happened to one decision. Retries with the same values are harmless."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"decision_id": EXAMPLE_DECISION, "converted": True, "quantity": 1, "revenue": "18.89",
         "currency": "USD", "occurred_at": "2026-12-02T10:03:00Z"},
        {"decision_id": EXAMPLE_DECISION, "converted": False},
    ]})  # fmt: skip

    decision_id: UUID
    converted: StrictBool
    quantity: Annotated[StrictInt, Field(ge=0, le=1_000_000, validate_default=True)] = 0
    revenue: Annotated[Money, Field(validate_default=True)] = Decimal(0)
    currency: CurrencyCode | None = None
    occurred_at: AwareDatetime | None = None
    discount: Money | None = Field(
        default=None,
        description="promotion money given (discount, or shipping borne); defaults to the "
        "offer's discount on the units bought",
    )

    @field_validator("quantity")
    @classmethod
    def _quantity_matches_conversion(cls, value: int, info: ValidationInfo) -> int:
        converted = info.data.get("converted")
        if converted is True and value < 1:
            raise ValueError("a converted outcome needs quantity >= 1")
        if converted is False and value != 0:
            raise ValueError("an outcome that did not convert has quantity 0")
        return value

    @field_validator("revenue")
    @classmethod
    def _revenue_matches_conversion(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        if value < 0:
            raise ValueError("revenue must not be negative")
        if info.data.get("converted") is False and value != 0:
            raise ValueError("an outcome that did not convert has revenue 0")
        return value

    @field_validator("discount")
    @classmethod
    def _discount_matches_conversion(
        cls, value: Decimal | None, info: ValidationInfo
    ) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("discount must not be negative")
        if value and info.data.get("converted") is False:
            raise ValueError("an outcome that did not convert gave no discount")
        return value


class OutcomePublic(BaseModel):
    """A stored outcome."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "decision_id": EXAMPLE_DECISION, "converted": True, "quantity": 1, "revenue": "18.89", "currency": "USD", "occurred_at": "2026-12-02T10:03:00Z", "recorded_at": "2026-12-02T10:03:01Z", "discount": "2.10", "late": False}]})  # fmt: skip

    id: UUID
    decision_id: UUID
    converted: bool
    quantity: int
    revenue: Money
    currency: str
    occurred_at: datetime
    recorded_at: datetime
    discount: Money = Decimal(0)
    late: bool = Field(
        default=False, description="recorded after the decision's outcome window: not learned from"
    )


class OutcomeBatchIn(_Strict):
    """``POST /v1/outcomes/batch``: up to 1,000 outcomes, stored in one transaction."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"outcomes": [
        {"decision_id": EXAMPLE_DECISION, "converted": True, "quantity": 1, "revenue": "18.89"},
    ]}]})  # fmt: skip

    outcomes: Annotated[list[OutcomeIn], Field(min_length=1, max_length=1000)]


class BatchItemResult(BaseModel):
    """Per-item status of a batch: ``created``, ``duplicate`` (already stored, same values),
    ``conflict`` (a different outcome is stored), ``not_found`` or ``invalid``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"index": 0, "decision_id": EXAMPLE_DECISION, "status": "created", "outcome": {"id": "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "decision_id": EXAMPLE_DECISION, "converted": True, "quantity": 1, "revenue": "18.89", "currency": "USD", "occurred_at": "2026-12-02T10:03:00Z", "recorded_at": "2026-12-02T10:03:01Z", "discount": "2.10", "late": False}, "error": None}]})  # fmt: skip

    index: int
    decision_id: UUID
    status: Literal["created", "duplicate", "conflict", "not_found", "invalid"]
    outcome: OutcomePublic | None = None
    error: str | None = None


class OutcomeBatchOut(BaseModel):
    """Batch result with counts per status."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [{"index": 0, "decision_id": EXAMPLE_DECISION, "status": "created", "outcome": {"id": "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "decision_id": EXAMPLE_DECISION, "converted": True, "quantity": 1, "revenue": "18.89", "currency": "USD", "occurred_at": "2026-12-02T10:03:00Z", "recorded_at": "2026-12-02T10:03:01Z", "discount": "2.10", "late": False}, "error": None}], "counts": {"created": 1}}]})  # fmt: skip

    results: list[BatchItemResult]
    counts: dict[str, int]


# --------------------------------------------------------------------------- keys
class KeyCreate(_Strict):
    """``POST /v1/keys``: a new API key for a role."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "checkout-eu", "role": "checkout"}]})

    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Literal["checkout", "merchandiser", "analyst", "admin"]


class KeyPublic(BaseModel):
    """A key as listed (never the secret)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", "name": "checkout-eu", "role": "checkout", "prefix": "pe_3e4f5a6b", "created_at": "2026-12-01T09:00:00Z", "revoked_at": None}]})  # fmt: skip

    id: UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyPublic):
    """A newly created key: ``key`` is shown this once and cannot be recovered."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", "name": "checkout-eu", "role": "checkout", "prefix": "pe_3e4f5a6b", "created_at": "2026-12-01T09:00:00Z", "revoked_at": None, "key": "pe_3e4f5a6b_examplesecretshownonce"}]})  # fmt: skip

    key: str
