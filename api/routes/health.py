"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import StateDep
from api.services.health import readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={
    200: {"description": "Serving; `status` is `degraded` when `degraded` lists anything"},
    503: {"description": "Database unreachable or not migrated"},
})  # fmt: skip
def readyz(state: StateDep) -> JSONResponse:
    """Ready when the database answers and is at the latest migration; ``degraded`` says
    what this worker serves in a degraded way (no model, a snapshot it could not load, a
    log it cannot write, a background refresh failing)."""
    ready, report = readiness(state.engine, state)
    return JSONResponse(status_code=200 if ready else 503, content=report)


@router.get("/metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    """Prometheus exposition format."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
