"""Checkout: quotes and outcomes."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from api.deps import SessionDep, StateDep, require
from api.errors import ApiError
from api.schemas import (
    OutcomeBatchIn,
    OutcomeBatchOut,
    OutcomeIn,
    OutcomePublic,
    QuoteRequest,
    QuoteResponse,
)
from api.security import Principal, Role
from api.services.outcomes import record_outcome, record_outcomes
from api.services.quotes import create_quote

router = APIRouter(prefix="/v1", tags=["checkout"])
Checkout = Annotated[Principal, Depends(require(Role.CHECKOUT))]


@router.post("/quotes", response_model=QuoteResponse, status_code=status.HTTP_201_CREATED)
def post_quote(
    body: QuoteRequest, state: StateDep, session: SessionDep, _: Checkout
) -> QuoteResponse:
    """Price every line of a cart; each line's decision is logged before the response."""
    if len(body.lines) > state.settings.max_quote_lines:
        raise ApiError.field(
            422, ["body", "lines"], f"at most {state.settings.max_quote_lines} lines per quote"
        )
    experiment = state.experiments.for_unit(body.customer_id)
    quote = create_quote(
        session,
        request=body,
        policy=state.policy_for(experiment),
        experiment=experiment,
        default_segment=state.settings.default_segment,
        ttl=timedelta(seconds=state.settings.quote_ttl_seconds),
        guardrail_version=state.guardrails.get()[0],
        outcome_window=timedelta(seconds=state.settings.outcome_window_seconds),
        context_schema=state.context_schema.get()[1],
    )
    for line in quote.lines:
        state.metrics.decisions.labels(
            state.policy.__class__.__name__, str(line.personalized)
        ).inc()
    return quote


@router.post(
    "/outcomes",
    response_model=OutcomePublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Identical retry: the stored outcome"},
        404: {"description": "Unknown decision"},
        409: {"description": "A different outcome is already stored"},
    },
)
def post_outcome(
    body: OutcomeIn, state: StateDep, session: SessionDep, response: Response, _: Checkout
) -> OutcomePublic:
    """Report what happened to one decision. Acknowledged only after it is committed."""
    try:
        outcome, created = record_outcome(session, data=body)
    except ApiError as exc:
        label = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid")
        state.metrics.outcomes.labels(label).inc()
        raise
    state.metrics.outcomes.labels("created" if created else "duplicate").inc()
    if not created:
        response.status_code = status.HTTP_200_OK
    return outcome


@router.post("/outcomes/batch", response_model=OutcomeBatchOut)
def post_outcome_batch(
    body: OutcomeBatchIn, state: StateDep, session: SessionDep, _: Checkout
) -> OutcomeBatchOut:
    """Report up to 1,000 outcomes in one transaction; each item gets its own status."""
    if len(body.outcomes) > state.settings.max_outcome_batch:
        raise ApiError.field(
            422,
            ["body", "outcomes"],
            f"at most {state.settings.max_outcome_batch} outcomes per batch",
        )
    result = record_outcomes(session, outcomes=body.outcomes)
    for name, count in result.counts.items():
        state.metrics.outcomes.labels(name).inc(count)
    return result


__all__ = ["router"]
