"""``/v1/experiments``: definitions, stored experiments, and their results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.schemas.common import Money, Name, VersionId

METRICS = ("conversion_rate", "revenue_per_visitor", "profit_per_visitor")
Metric = Literal["conversion_rate", "revenue_per_visitor", "profit_per_visitor"]


class VariantIn(BaseModel):
    """One arm: a policy and its share of traffic."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    policy: Literal["control", "engine"]
    allocation: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    guardrail_version: VersionId | None = None
    exploration_epsilon: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    holdout: StrictBool = False


class GuardrailMetricIn(BaseModel):
    """A metric that must not get worse than ``max_relative_drop`` (do-no-harm check)."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric
    max_relative_drop: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


#: The demo's experiment (``seed-demo --simulate`` runs it) and the /docs example.
EXAMPLE_EXPERIMENT: dict[str, Any] = {
    "name": "Personalized prices vs list price", "layer": "pricing",
    "description": "Half the customers see list prices (holdout), half the engine.",
    "variants": [
        {"name": "control", "policy": "control", "allocation": 0.5, "holdout": True},
        {"name": "engine", "policy": "engine", "allocation": 0.5},
    ],
    "guardrail_metrics": [{"metric": "conversion_rate", "max_relative_drop": 0.05}],
}  # fmt: skip


class ExperimentIn(BaseModel):
    """``PUT /v1/experiments/{key}``: define (or redefine, while a draft) an experiment."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_EXPERIMENT]})

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    layer: Name | None = None
    salt: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    variants: Annotated[list[VariantIn], Field(min_length=2, max_length=10)]
    guardrail_metrics: Annotated[list[GuardrailMetricIn], Field(max_length=10)] = Field(
        default_factory=list
    )


class ExperimentPublic(BaseModel):
    """An experiment as stored."""

    key: str
    name: str
    description: str
    layer: str | None
    salt: str
    status: str
    variants: list[dict[str, Any]]
    guardrail_metrics: list[dict[str, Any]]
    created_at: datetime
    created_by: str
    started_at: datetime | None
    stopped_at: datetime | None


class VariantResult(BaseModel):
    """Per-variant totals and per-visitor means.

    Money is a decimal string in ``currency`` (None when the experiment's decisions mix
    currencies: the amounts are then sums of unlike units, flagged in ``messages``).
    Totals are exact; per-visitor means carry two more decimals than the currency.
    """

    name: str
    policy: str
    allocation: float
    holdout: bool
    visitors: int
    conversions: int
    currency: str | None
    revenue: Money
    profit: Money
    conversion_rate: float | None
    revenue_per_visitor: Money | None
    profit_per_visitor: Money | None


class LiftResult(BaseModel):
    """Relative lift of a variant over the baseline on one metric."""

    variant: str
    metric: str
    estimate: float | None
    se: float | None
    lower: float | None
    upper: float | None
    prob_better: float | None
    expected_loss: float | None
    expected_loss_control: float | None
    message: str


class HarmCheck(BaseModel):
    """Do-no-harm check of one declared guardrail metric for one variant."""

    variant: str
    metric: str
    max_relative_drop: float
    status: str
    probability: float | None
    message: str


class ResultsOut(BaseModel):
    """``GET /v1/experiments/{key}/results``.

    Visitors are customers first exposed to the experiment; a visitor converts if any of
    their decisions converted; revenue and profit are summed per visitor (profit = revenue
    - unit cost x units - promotion cost borne).
    """

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "key": "pricing-2026-12", "status": "running", "currency": "USD", "baseline": "control",
        "credible_level": 0.95,
        "variants": [
            {"name": "control", "policy": "control", "allocation": 0.5, "holdout": True,
             "visitors": 1204, "conversions": 138, "currency": "USD", "revenue": "2620.62",
             "profit": "1177.42", "conversion_rate": 0.1146, "revenue_per_visitor": "2.1766",
             "profit_per_visitor": "0.9779"},
            {"name": "engine", "policy": "engine", "allocation": 0.5, "holdout": False,
             "visitors": 1189, "conversions": 149, "currency": "USD", "revenue": "2711.51",
             "profit": "1295.01", "conversion_rate": 0.1253, "revenue_per_visitor": "2.2805",
             "profit_per_visitor": "1.0892"},
        ],
        "lifts": [{"variant": "engine", "metric": "profit_per_visitor", "estimate": 0.114,
                   "se": 0.061, "lower": -0.006, "upper": 0.233, "prob_better": 0.969,
                   "expected_loss": 0.0012, "expected_loss_control": 0.0981, "message": ""}],
        "srm": {"flagged": False, "p_value": 0.81, "statistic": 0.06, "dof": 1, "message": ""},
        "do_no_harm": [{"variant": "engine", "metric": "conversion_rate",
                        "max_relative_drop": 0.05, "status": "ok", "probability": 0.99,
                        "message": ""}],
        "messages": [],
    }]})  # fmt: skip

    key: str
    status: str
    currency: str | None
    baseline: str
    credible_level: float
    variants: list[VariantResult]
    lifts: list[LiftResult]
    srm: dict[str, Any]
    do_no_harm: list[HarmCheck]
    messages: list[str]
