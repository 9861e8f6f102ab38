"""``POST /v1/outcomes`` (and ``/batch``): what happened to a decision."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from api.schemas.common import (
    EXAMPLE_DECISION,
    CurrencyCode,
    Money,
    StrictBody,
)


class OutcomeIn(StrictBody):
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


class OutcomeBatchIn(StrictBody):
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
