"""Analysts: demand model versions, diagnostics, elasticities, NetCDF export."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from api.deps import SessionDep, require
from api.errors import Conflict, NotFound
from api.orm import ModelSnapshot
from api.schemas.demand_models import Elasticity, ModelPublic
from api.security import Principal, Role
from api.services.demand_models import PUBLISHED, current_snapshot, load_posterior

router = APIRouter(prefix="/v1", tags=["analyst"])
Analyst = Annotated[Principal, Depends(require(Role.ANALYST, Role.MERCHANDISER))]


def _public(row: ModelSnapshot, serving_id: int | None) -> ModelPublic:
    return ModelPublic(
        version=row.id, status=row.status, serving=row.id == serving_id, created_at=row.created_at,
        method=row.method, approximate=row.approximate, config_hash=row.config_hash,
        data_watermark=row.data_watermark, n_cells=row.n_cells, n_trials=row.n_trials,
        n_conversions=row.n_conversions, diagnostics=row.diagnostics, message=row.message,
        ess=row.ess, applied_outcomes=row.applied_outcomes, weights_updated_at=row.weights_updated_at,
    )  # fmt: skip


def _snapshot(session: SessionDep, version: int) -> ModelSnapshot:
    row = session.get(ModelSnapshot, version)
    if row is None:
        raise NotFound(["path", "version"], f"unknown model version {version}")
    return row


def _published(session: SessionDep, version: int) -> ModelSnapshot:
    row = _snapshot(session, version)
    if row.status != PUBLISHED:
        raise Conflict(
            ["path", "version"],
            f"model version {version} was {row.status}: {row.message}",
            "not_published",
        )
    return row


@router.get("/models", response_model=list[ModelPublic])
def list_models(
    session: SessionDep, _: Analyst, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ModelPublic]:
    """Fits newest first, published and rejected, with diagnostics; ``serving`` marks the live one."""
    serving = current_snapshot(session)
    rows = session.scalars(select(ModelSnapshot).order_by(ModelSnapshot.id.desc()).limit(limit))
    return [_public(r, serving.id if serving else None) for r in rows]


@router.get("/models/{version}", response_model=ModelPublic)
def get_model(version: int, session: SessionDep, _: Analyst) -> ModelPublic:
    """One fit."""
    serving = current_snapshot(session)
    return _public(_snapshot(session, version), serving.id if serving else None)


@router.get("/models/{version}/elasticities", response_model=list[Elasticity])
def elasticities(version: int, session: SessionDep, _: Analyst) -> list[Elasticity]:
    """Per segment × category: weighted posterior mean and 90% interval of b."""
    posterior = load_posterior(_published(session, version))
    out = []
    for segment, category in posterior.pairs:
        summary = posterior.elasticity_summary(segment, category, 0.9)
        out.append(Elasticity(segment=segment, category=category, mean=summary["mean"],
                              lower_90=summary["lower"], upper_90=summary["upper"]))  # fmt: skip
    return out


@router.get(
    "/models/{version}/netcdf",
    response_class=Response,
    responses={200: {"content": {"application/x-netcdf": {}}}},
)
def export_netcdf(version: int, session: SessionDep, _: Analyst) -> Response:
    """The snapshot's draws as ArviZ InferenceData in NetCDF."""
    posterior = load_posterior(_published(session, version))
    idata = posterior.to_inference_data()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "posterior.nc")
        idata.to_netcdf(path)
        with open(path, "rb") as handle:
            content = handle.read()
    return Response(
        content,
        media_type="application/x-netcdf",
        headers={"Content-Disposition": f'attachment; filename="demand-model-{version}.nc"'},
    )
