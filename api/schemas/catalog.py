"""Products and segments: ``/v1/products`` (and ``:import``), ``/v1/segments``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)

from api.schemas.common import (
    CategoryKey,
    CurrencyCode,
    Money,
    SkuId,
    StrictBody,
    check_currency,
)
from pricing.money import MoneyError, to_minor


class ProductIn(StrictBody):
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

    _currency = field_validator("currency")(check_currency)

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


class SegmentIn(StrictBody):
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
