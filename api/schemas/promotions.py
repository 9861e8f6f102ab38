"""``/v1/promotions``: a promotion as defined, and as stored with its usage."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from api.schemas.common import MAX_VERSION, CurrencyCode, Money, Name


class EligibilityIn(BaseModel):
    """Who and what a promotion applies to; empty lists mean "any"."""

    model_config = ConfigDict(extra="forbid")

    segments: Annotated[list[Name], Field(max_length=500)] = Field(default_factory=list)
    categories: Annotated[list[Name], Field(max_length=500)] = Field(default_factory=list)
    skus: Annotated[list[Name], Field(max_length=10_000)] = Field(default_factory=list)
    channels: Annotated[list[Name], Field(max_length=50)] = Field(default_factory=list)
    min_cart_value: Money | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class PromotionIn(BaseModel):
    """``PUT /v1/promotions/{key}``: the complete promotion (a new version each time)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "10% off coffee", "type": "percent_off", "percent_off": "10", "currency": "USD",
        "budget": "250.00", "per_customer_limit": 1,
        "eligibility": {"categories": ["coffee"], "ends_at": "2027-01-31T23:59:59Z"},
    }]})  # fmt: skip

    name: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["percent_off", "amount_off", "free_shipping"]
    percent_off: Annotated[Decimal, Field(gt=0, le=100, max_digits=6, decimal_places=3)] | None = (
        None
    )
    amount_off: Money | None = None
    shipping_cost: Money | None = None
    currency: CurrencyCode | None = None
    eligibility: EligibilityIn = Field(default_factory=EligibilityIn)
    budget: Money | None = None
    redemption_cap: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)] | None = None
    per_customer_limit: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)] | None = None
    per_customer_period: Literal["day", "campaign"] = "campaign"
    exclusive: StrictBool = True
    active: StrictBool = True


class UsagePublic(BaseModel):
    """Where a promotion stands: settled spend and redemptions, what open offers hold."""

    spent: str | None
    held: str | None
    remaining_budget: str | None
    redemptions: int
    open_offers: int
    eligible_visits: int
    pacing_rate: str | None = Field(
        description="expected spend allowed per eligible decision now (paced promotions)"
    )


class PromotionPublic(BaseModel):
    """A promotion as stored, with its usage."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "key": "COFFEE10", "version": 1, "name": "10% off coffee", "type": "percent_off",
        "percent_off": "10", "amount_off": None, "shipping_cost": None, "currency": "USD",
        "eligibility": {"categories": ["coffee"], "ends_at": "2027-01-31T23:59:59Z"},
        "budget": "250.00", "redemption_cap": None, "per_customer_limit": 1,
        "per_customer_period": "campaign", "exclusive": True, "active": True,
        "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z",
    }]})  # fmt: skip

    key: str
    version: int
    name: str
    type: str
    percent_off: str | None = None
    amount_off: str | None = None
    shipping_cost: str | None = None
    currency: str | None = None
    eligibility: dict[str, Any]
    budget: str | None = None
    redemption_cap: int | None = None
    per_customer_limit: int | None = None
    per_customer_period: str
    exclusive: bool
    active: bool
    created_at: datetime
    updated_at: datetime
    usage: UsagePublic | None = None
