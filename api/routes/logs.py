"""Analysts: the decision log, with outcomes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import SessionDep, require
from api.errors import Invalid
from api.schemas.common import IDENTIFIER_PATTERN
from api.schemas.decisions import DecisionPage, DecisionPublic, ExplanationOut
from api.security import Principal, Role
from api.services import decisions
from api.services.explanations import explain
from api.services.feedback import bandit_feedback, feedback_zip

router = APIRouter(prefix="/v1", tags=["analyst"])
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]


@router.get("/decisions", response_model=DecisionPage)
def list_decisions(
    session: SessionDep,
    _: Analyst,
    sku: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    segment: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    since: Annotated[
        datetime | None, Query(description="only decisions at or after this time")
    ] = None,
    after: Annotated[str | None, Query(description="cursor from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DecisionPage:
    """Decisions in time order, with their outcomes."""
    if since is not None and since.tzinfo is None:
        raise Invalid(["query", "since"], "timestamp needs a UTC offset, e.g. Z")
    return decisions.list_decisions(
        session, sku=sku, segment=segment, since=since, after=after, limit=limit
    )


@router.get("/decisions/{decision_id}", response_model=DecisionPublic)
def get_decision(decision_id: uuid.UUID, session: SessionDep, _: Analyst) -> DecisionPublic:
    """One decision and its outcome."""
    return decisions.get_decision(session, decision_id)


@router.get(
    "/decisions/{decision_id}/explanation",
    response_model=ExplanationOut,
    responses={404: {"description": "Unknown decision (or, for a checkout key, not one it asked for)"}},
)
def get_explanation(
    decision_id: uuid.UUID,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.ANALYST, Role.CHECKOUT))],
) -> ExplanationOut:
    """Why this price: the inputs used, the model version, the candidates, the chosen price
    and promotion with their propensity, the guardrails that bound it, the disclosure and
    the reference price; with a plain-language ``summary``. A checkout key reads the
    decisions it asked for."""
    return explain(session, decision_id, principal)


@router.get(
    "/logs/bandit-feedback",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "feedback.npz + feedback.json (OBP conventions)",
        }
    },
)
def bandit_feedback_route(
    session: SessionDep,
    _: Analyst,
    since: Annotated[datetime | None, Query(description="decisions at or after (UTC)")] = None,
    until: Annotated[datetime | None, Query(description="decisions before (UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 1_000_000,
) -> Response:
    """The decision log as Open Bandit Pipeline bandit feedback: a ZIP with ``feedback.npz``
    (reward, action, position, pscore, context, ...) and ``feedback.json`` (action meanings,
    segments, SKUs, context columns)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Invalid(["query", name], "timestamp needs a UTC offset, e.g. Z")
    arrays, metadata = bandit_feedback(session, since=since, until=until, limit=limit)
    return Response(
        feedback_zip(arrays, metadata),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="bandit-feedback.zip"'},
    )
