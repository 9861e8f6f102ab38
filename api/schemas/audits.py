"""``/v1/audits``: reports that check how the engine treated customers."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Money


class PriceGroup(BaseModel):
    """Served prices of one SKU within one segment or jurisdiction."""

    key: str | None
    decisions: int
    min: Money
    median: Money
    max: Money


class DispersionDay(BaseModel):
    """One UTC day of a SKU: the lowest and highest price served to any segment."""

    day: date
    low: Money
    high: Money
    ratio: float
    #: ``high / low <= segment_gap`` (None without a segment-gap rule).
    held: bool | None


class SkuDispersion(BaseModel):
    """How far one SKU's served prices spread across customers over the window."""

    sku: str
    currency: str
    decisions: int
    min: Money
    p05: Money
    median: Money
    p95: Money
    max: Money
    #: max / min of the prices served.
    ratio: float
    by_segment: list[PriceGroup]
    by_jurisdiction: list[PriceGroup]
    #: The segment-gap rule of the SKU under the active guardrails (None: no such rule).
    segment_gap: float | None
    #: Whether the gap held on every day of the window (None without a rule).
    gap_held_every_day: bool | None
    days: list[DispersionDay]


class DispersionReport(BaseModel):
    """``GET /v1/audits/price-dispersion``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "guardrail_version": 2,
        "skus": [{
            "sku": "COF-001", "currency": "USD", "decisions": 412, "min": "16.99", "p05": "17.49",
            "median": "17.99", "p95": "18.99", "max": "18.99", "ratio": 1.118,
            "by_segment": [{"key": "loyalty", "decisions": 210, "min": "16.99", "median": "17.99",
                            "max": "18.99"}],
            "by_jurisdiction": [{"key": "US-CA", "decisions": 300, "min": "16.99",
                                 "median": "17.99", "max": "18.99"}],
            "segment_gap": 1.2, "gap_held_every_day": True,
            "days": [{"day": "2026-11-30", "low": "16.99", "high": "18.99", "ratio": 1.118,
                      "held": True}],
        }],
        "next_after": None,
    }]}, populate_by_name=True)  # fmt: skip

    from_: datetime = Field(alias="from")
    to: datetime
    guardrail_version: int | None
    skus: list[SkuDispersion]
    #: Pass as ``after`` for the next page of SKUs (None on the last page).
    next_after: str | None = None
