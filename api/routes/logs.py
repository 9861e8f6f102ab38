"""Analysts: the decision log, with outcomes."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SessionDep, require
from api.errors import Invalid, NotFound
from api.orm import Decision, Outcome
from api.schemas.common import IDENTIFIER_PATTERN
from api.schemas.decisions import DecisionPage, DecisionPublic
from api.security import Principal, Role
from api.services.feedback import bandit_feedback, feedback_zip
from api.services.outcomes import outcome_public
from pricing.money import from_minor

router = APIRouter(prefix="/v1", tags=["analyst"])
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]


def _public(decision: Decision, outcome: Outcome | None) -> DecisionPublic:
    money = {
        "list_price": from_minor(decision.list_price_minor, decision.currency),
        "price": from_minor(decision.price_minor, decision.currency),
        "unit_cost": from_minor(decision.unit_cost_minor, decision.currency),
        "discount": from_minor(decision.discount_minor, decision.currency),
        "promotion_cost": from_minor(decision.promotion_cost_minor, decision.currency),
        "promotion_reserved": from_minor(decision.promotion_reserved_minor, decision.currency),
    }
    fields = {
        name: getattr(decision, name)
        for name in DecisionPublic.model_fields
        if name not in {*money, "outcome"}
    }
    return DecisionPublic(
        **fields, **money, outcome=outcome_public(outcome) if outcome is not None else None
    )


def _with_outcomes(session: Session, decisions: list[Decision]) -> list[DecisionPublic]:
    ids = [d.id for d in decisions]
    outcomes = {
        o.decision_id: o
        for o in session.scalars(select(Outcome).where(Outcome.decision_id.in_(ids)))
    }
    return [_public(d, outcomes.get(d.id)) for d in decisions]


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
    query = select(Decision).order_by(Decision.created_at, Decision.id).limit(limit + 1)
    if sku is not None:
        query = query.where(Decision.sku == sku)
    if segment is not None:
        query = query.where(Decision.segment == segment)
    if since is not None:
        if since.tzinfo is None:
            raise Invalid(["query", "since"], "timestamp needs a UTC offset, e.g. Z")
        query = query.where(Decision.created_at >= since)
    if after is not None:
        try:
            raw = base64.urlsafe_b64decode(after.encode("ascii")).decode("utf-8")
            stamp, _sep, ident = raw.partition("|")
            cursor_time, cursor_id = datetime.fromisoformat(stamp), uuid.UUID(ident)
            if cursor_time.tzinfo is None:
                raise ValueError("naive cursor time")
        except (ValueError, UnicodeError):
            raise Invalid(["query", "after"], "malformed cursor") from None
        query = query.where(
            (Decision.created_at > cursor_time)
            | ((Decision.created_at == cursor_time) & (Decision.id > cursor_id))
        )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more:
        raw = f"{rows[-1].created_at.isoformat()}|{rows[-1].id}"
        cursor = base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")
    return DecisionPage(items=_with_outcomes(session, rows), next_after=cursor)


@router.get("/decisions/{decision_id}", response_model=DecisionPublic)
def get_decision(decision_id: uuid.UUID, session: SessionDep, _: Analyst) -> DecisionPublic:
    """One decision and its outcome."""
    decision = session.get(Decision, decision_id)
    if decision is None:
        raise NotFound(["path", "decision_id"], f"unknown decision {decision_id}")
    return _with_outcomes(session, [decision])[0]


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
