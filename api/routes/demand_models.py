"""Analysts: demand model versions, diagnostics, elasticities, NetCDF export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from api.deps import SessionDep, require
from api.schemas.common import MAX_VERSION
from api.schemas.demand_models import Elasticity, ModelPublic
from api.security import Principal, Role
from api.services import demand_models

Version = Annotated[int, Path(ge=1, le=MAX_VERSION, description="model version")]
router = APIRouter(prefix="/v1", tags=["analyst"])
Analyst = Annotated[Principal, Depends(require(Role.ANALYST, Role.MERCHANDISER))]


@router.get("/models", response_model=list[ModelPublic])
def list_models(
    session: SessionDep, _: Analyst, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ModelPublic]:
    """Fits newest first, published and rejected, with diagnostics; ``serving`` marks the live one."""
    return demand_models.list_models(session, limit)


@router.get("/models/{version}", response_model=ModelPublic)
def get_model(version: Version, session: SessionDep, _: Analyst) -> ModelPublic:
    """One fit."""
    return demand_models.get_model(session, version)


@router.get("/models/{version}/elasticities", response_model=list[Elasticity])
def elasticities(version: Version, session: SessionDep, _: Analyst) -> list[Elasticity]:
    """Per segment × category: weighted posterior mean and 90% interval of b."""
    return demand_models.elasticities(session, version)


@router.get(
    "/models/{version}/netcdf",
    response_class=Response,
    responses={200: {"content": {"application/x-netcdf": {}}}},
)
def export_netcdf(version: Version, session: SessionDep, _: Analyst) -> Response:
    """The snapshot's draws as ArviZ InferenceData in NetCDF."""
    return Response(
        demand_models.netcdf(session, version),
        media_type="application/x-netcdf",
        headers={"Content-Disposition": f'attachment; filename="demand-model-{version}.nc"'},
    )
