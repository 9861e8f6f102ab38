"""Guardrails: the rule set, its stored versions, and previews (with the OPE what-if)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

from api.schemas.common import IDENTIFIER_PATTERN, Money, Name

#: A relative setting (0.2 = 20 %), at most 100 (10,000 %): a larger one would only overflow
#: the price arithmetic, never change what is served.
Fraction = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


class RuleIn(BaseModel):
    """One scope's rules. Floors and ceilings are absolute prices, so they are set per SKU
    (in the SKU's currency); every other setting is relative and may be set at any scope."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["global", "category", "sku"]
    target: Annotated[str, Field(pattern=IDENTIFIER_PATTERN)] | None = None
    floor: Money | None = None
    ceiling: Money | None = None
    min_margin: Fraction | None = None
    max_discount: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    max_increase: Fraction | None = None
    max_change: Fraction | None = Field(
        default=None, description="largest change vs the last price served today"
    )
    ending: Annotated[StrictInt, Field(ge=0, le=99)] | None = Field(
        default=None, description="last two minor digits, e.g. 99"
    )
    step: Money | None = Field(default=None, description="price ladder step")
    exclude: StrictBool | None = None
    segment_gap: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] | None = Field(
        default=None, description="largest highest/lowest price ratio between segments today"
    )

    @field_validator("floor", "ceiling", "step")
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive amount")
        return value


class GuardrailSetIn(BaseModel):
    """``PUT /v1/guardrails``: the complete new guardrail set (it replaces the active one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "note": "bounded discounts; coffee at most 20% off; espresso beans never under 15.00",
        "rules": [
            {"scope": "global", "max_discount": 0.3, "max_increase": 0.2, "min_margin": 0.1,
             "max_change": 0.25, "segment_gap": 1.3},
            {"scope": "category", "target": "coffee", "max_discount": 0.2},
            {"scope": "sku", "target": "COF-001", "floor": "15.00"},
        ],
    }]})  # fmt: skip

    rules: Annotated[list[RuleIn], Field(max_length=10_000)] = Field(default_factory=list)
    kill_switch: StrictBool = False
    effective_from: AwareDatetime | None = None
    note: Annotated[str, Field(max_length=2000)] = ""


class GuardrailsPublic(BaseModel):
    """A stored guardrail version."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "version": 2, "effective_from": "2026-12-01T09:00:00Z", "created_at": "2026-12-01T09:00:00Z",
        "created_by": "demo-merchandiser", "kill_switch": False, "note": "demo guardrails",
        "rules": [{"scope": "global", "max_discount": 0.3, "max_increase": 0.2},
                  {"scope": "sku", "target": "COF-001", "floor": "15.00"}],
    }]})  # fmt: skip

    version: int
    effective_from: datetime
    created_at: datetime
    created_by: str
    kill_switch: bool
    rules: list[dict[str, Any]]
    note: str


class EstimateOut(BaseModel):
    """One OPE estimate of profit per decision (currency units)."""

    estimator: str
    value: float
    lower: float
    upper: float
    ess: float
    max_weight: float
    warnings: list[str]


class WhatIfOut(BaseModel):
    """OPE of the proposal (and of the guardrails in force) on the logged decisions."""

    rounds: int
    currency: str | None
    logged_profit_per_decision: float | None
    proposed: list[EstimateOut]
    current: list[EstimateOut]
    message: str


class PreviewIn(GuardrailSetIn):
    """A proposed guardrail set and, optionally, which SKUs and segments to preview."""

    skus: Annotated[list[Name], Field(max_length=200)] | None = None
    segments: Annotated[list[Name], Field(max_length=50)] | None = None
    what_if_rounds: Annotated[int, Field(ge=0, le=50_000)] = Field(
        default=5000,
        description="newest logged decisions to evaluate the proposal on (OPE); 0 skips it",
    )


class PreviewLine(BaseModel):
    """What the policy would do for one segment and SKU under the proposal."""

    segment: str
    sku: str
    currency: str
    prices: list[str]
    probabilities: list[float]
    binding: dict[str, list[str]]
    personalized: bool
    expected_conversion: float | None
    expected_profit_per_visitor: str | None


class PreviewOut(BaseModel):
    """Preview of a proposal under the current posterior; nothing is activated."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model_version": 3, "epsilon": 0.05,
        "lines": [{
            "segment": "loyalty", "sku": "COF-001", "currency": "USD",
            "prices": ["15.99", "16.99", "17.99", "18.99"],
            "probabilities": [0.0125, 0.2875, 0.6875, 0.0125],
            "binding": {"low": ["sku:COF-001.floor"], "high": ["list_price"]}, "personalized": True,
            "expected_conversion": 0.121, "expected_profit_per_visitor": "0.97",
        }],
        "what_if": {
            "rounds": 5000, "currency": "USD", "logged_profit_per_decision": 0.91,
            "proposed": [{"estimator": "snips", "value": 0.95, "lower": 0.88, "upper": 1.02,
                          "ess": 1210.4, "max_weight": 6.2, "warnings": []}],
            "current": [{"estimator": "snips", "value": 0.92, "lower": 0.86, "upper": 0.98,
                         "ess": 1388.0, "max_weight": 5.1, "warnings": []}],
            "message": "",
        },
    }]})  # fmt: skip

    model_version: int | None
    epsilon: float
    lines: list[PreviewLine]
    what_if: WhatIfOut | None = None
