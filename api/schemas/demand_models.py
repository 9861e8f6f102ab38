"""``/v1/models``: demand model fits and their elasticities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ModelPublic(BaseModel):
    """One fit of the demand model."""

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

    segment: str
    category: str
    mean: float
    lower_90: float
    upper_90: float
