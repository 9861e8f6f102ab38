"""Analysts: audits of how the engine treated customers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import SessionDep, require
from api.schemas.audits import DispersionReport
from api.schemas.common import IDENTIFIER_PATTERN
from api.security import Principal, Role
from api.services.dispersion import price_dispersion

router = APIRouter(prefix="/v1/audits", tags=["analyst"])
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]


@router.get("/price-dispersion", response_model=DispersionReport)
def get_price_dispersion(
    session: SessionDep,
    _: Analyst,
    start: Annotated[
        datetime | None, Query(alias="from", description="window start (UTC); default: 30 days before `to`")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="window end (UTC); default: now")] = None,
    after: Annotated[
        str | None, Query(max_length=64, pattern=IDENTIFIER_PATTERN, description="next page after this SKU")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DispersionReport:
    """Per SKU, how far served prices spread across segments and jurisdictions in the
    window (min, quantiles, max, ratio) and whether the segment-gap guardrail held on
    every day."""
    return price_dispersion(session, start=start, end=end, after=after, limit=limit)
