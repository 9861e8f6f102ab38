"""``/v1/models``: demand model fits and their elasticities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ModelPublic(BaseModel):
    """One fit of the demand model."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "version": 3, "status": "published", "serving": True, "created_at": "2026-12-01T09:00:00Z",
        "method": "nuts", "approximate": False, "config_hash": "9c1e2f0a7b3d",
        "data_watermark": "2026-12-01T08:59:30Z", "n_cells": 412, "n_trials": 18250,
        "n_conversions": 2311,
        "diagnostics": {"r_hat_max": 1.004, "ess_bulk_min": 812.0, "divergences": 0},
        "message": "passed the gate", "ess": 1840.5, "applied_outcomes": 960,
        "weights_updated_at": "2026-12-01T10:00:00Z",
    }]})  # fmt: skip

    version: int
    status: str
    serving: bool
    created_at: datetime
    method: str
    approximate: bool
    config_hash: str
    data_watermark: datetime
    n_cells: int
    n_trials: int
    n_conversions: int
    diagnostics: dict[str, Any]
    message: str
    ess: float | None
    applied_outcomes: int
    weights_updated_at: datetime | None


class Elasticity(BaseModel):
    """Posterior of the price coefficient b (< 0) of a segment in a category."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "segment": "loyalty", "category": "coffee", "mean": -1.42, "lower_90": -1.71,
        "upper_90": -1.15,
    }]})  # fmt: skip

    segment: str
    category: str
    mean: float
    lower_90: float
    upper_90: float
