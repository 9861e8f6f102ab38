"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import StateDep
from api.migrate import migration_state

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Database unreachable or not migrated"}})
def readyz(state: StateDep) -> JSONResponse:
    """Ready when the database answers and is at the latest migration."""
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        migrations = migration_state(state.engine)
    except Exception as exc:  # any database failure means "not ready", never a 500
        return JSONResponse(
            status_code=503, content={"status": "unavailable", "database": str(exc)[:200]}
        )
    if not migrations.up_to_date:
        return JSONResponse(
            status_code=503, content={"status": "unavailable", "migrations": migrations.describe()}
        )
    return JSONResponse(content={"status": "ready", "migrations": migrations.describe()})


@router.get("/metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    """Prometheus exposition format."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
