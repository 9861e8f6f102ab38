"""Analysts and merchandisers: experiments and their results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from api.deps import SessionDep, StateDep, require
from api.schemas.common import IDENTIFIER_PATTERN
from api.schemas.experiments import ExperimentIn, ExperimentPublic, ResultsOut
from api.security import Principal, Role
from api.services.experiments import (
    experiment_results,
    get_experiment,
    list_experiments,
    public,
    put_experiment,
    set_status,
)

router = APIRouter(prefix="/v1", tags=["analyst"])
Editor = Annotated[Principal, Depends(require(Role.ANALYST, Role.MERCHANDISER))]
Key = Annotated[str, Path(pattern=IDENTIFIER_PATTERN)]


@router.put(
    "/experiments/{key}",
    response_model=ExperimentPublic,
    responses={
        200: {"description": "Draft updated"},
        201: {"description": "Created"},
        409: {"description": "Already started"},
    },
)
def put_experiment_route(
    key: Key, body: ExperimentIn, session: SessionDep, response: Response, actor: Editor
) -> ExperimentPublic:
    """Define an experiment (a draft until started). Allocations must sum to 1."""
    out, created = put_experiment(session, key=key, body=body, actor=actor)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return out


@router.post("/experiments/{key}/start", response_model=ExperimentPublic)
def start_experiment(
    key: Key, session: SessionDep, state: StateDep, actor: Editor
) -> ExperimentPublic:
    """Start assigning traffic. 409 if another running experiment shares its layer."""
    out = set_status(session, key=key, status="running", actor=actor)
    state.experiments.invalidate()
    return out


@router.post("/experiments/{key}/stop", response_model=ExperimentPublic)
def stop_experiment(
    key: Key, session: SessionDep, state: StateDep, actor: Editor
) -> ExperimentPublic:
    """Stop assigning traffic (results stay available)."""
    out = set_status(session, key=key, status="stopped", actor=actor)
    state.experiments.invalidate()
    return out


@router.get("/experiments", response_model=list[ExperimentPublic])
def list_experiments_route(session: SessionDep, _: Editor) -> list[ExperimentPublic]:
    """Every experiment, newest first."""
    return list_experiments(session)


@router.get("/experiments/{key}", response_model=ExperimentPublic)
def get_experiment_route(key: Key, session: SessionDep, _: Editor) -> ExperimentPublic:
    """One experiment."""
    return public(get_experiment(session, key))


@router.get("/experiments/{key}/results", response_model=ResultsOut)
def results(
    key: Key,
    session: SessionDep,
    _: Editor,
    baseline: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    credible_level: Annotated[float, Query(gt=0.5, lt=1)] = 0.95,
) -> ResultsOut:
    """Per variant: visitors, conversions, revenue, profit and per-visitor means; for each
    variant against the baseline (default: the control), relative lift with a credible
    interval, chance to win and expected loss; the sample-ratio-mismatch test; do-no-harm
    checks. Degenerate data (no visitors, zero baseline) gives messages, not errors."""
    return experiment_results(session, key=key, baseline=baseline, credible_level=credible_level)


__all__ = ["router"]
