"""Checkout: quotes and outcomes (async: they wait on the worker's group writer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from api.deps import StateDep, require
from api.errors import Conflict, Invalid, NotFound, Unavailable
from api.schemas.outcomes import OutcomeBatchIn, OutcomeBatchOut, OutcomeIn, OutcomePublic
from api.schemas.quotes import QuoteRequest, QuoteResponse
from api.security import Principal, Role
from api.services.outcomes import OutcomeJob, batch_result, outcome_items, single_result
from api.writer import WriteUnavailableError

router = APIRouter(prefix="/v1", tags=["checkout"])
Checkout = Annotated[Principal, Depends(require(Role.CHECKOUT))]
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "Could not be committed; nothing was shown or stored. Retry."}
}


def _unavailable(what: str) -> Unavailable:
    return Unavailable(f"{what} could not be committed; retry")


@router.post(
    "/quotes",
    response_model=QuoteResponse,
    status_code=status.HTTP_201_CREATED,
    responses=_UNAVAILABLE,
)
async def post_quote(body: QuoteRequest, state: StateDep, _: Checkout) -> Response:
    """Price every line of a cart; each line's decision is committed before the response."""
    if len(body.lines) > state.settings.max_quote_lines:
        raise Invalid(
            ["body", "lines"], f"at most {state.settings.max_quote_lines} lines per quote"
        )
    experiment = state.experiments.for_unit(body.customer_id)
    try:
        quote = await state.quotes.create(
            body,
            policy=state.policy_for(experiment),
            experiment=experiment,
            guardrail_version=state.guardrails.get()[0],
        )
    except WriteUnavailableError:
        raise _unavailable("the quote") from None
    for line in quote.lines:
        state.metrics.decisions.labels(line.policy_name, str(line.personalized)).inc()
    # Serialized straight from the model the service built (and validated): FastAPI's
    # response_model pass would validate and encode it a second time.
    return Response(quote.model_dump_json(), status.HTTP_201_CREATED, media_type="application/json")


@router.post(
    "/outcomes",
    response_model=OutcomePublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Identical retry: the stored outcome"},
        404: {"description": "Unknown decision"},
        409: {"description": "A different outcome is already stored"},
        **_UNAVAILABLE,
    },
)
async def post_outcome(
    body: OutcomeIn, state: StateDep, response: Response, _: Checkout
) -> OutcomePublic:
    """Report what happened to one decision. Acknowledged only after it is committed."""
    items = outcome_items([body])
    try:
        await state.writer.write_async(OutcomeJob(items, state.sticky.mark_reported))
    except WriteUnavailableError:
        raise _unavailable("the outcome") from None
    try:
        outcome, created = single_result(items[0])
    except (NotFound, Conflict, Invalid) as exc:
        label = {NotFound: "not_found", Conflict: "conflict"}.get(type(exc), "invalid")
        state.metrics.outcomes.labels(label).inc()
        raise
    state.metrics.outcomes.labels("created" if created else "duplicate").inc()
    if not created:
        response.status_code = status.HTTP_200_OK
    return outcome


@router.post("/outcomes/batch", response_model=OutcomeBatchOut, responses=_UNAVAILABLE)
async def post_outcome_batch(body: OutcomeBatchIn, state: StateDep, _: Checkout) -> OutcomeBatchOut:
    """Report up to 1,000 outcomes at once; each item gets its own status."""
    if len(body.outcomes) > state.settings.max_outcome_batch:
        raise Invalid(
            ["body", "outcomes"],
            f"at most {state.settings.max_outcome_batch} outcomes per batch",
        )
    items = outcome_items(body.outcomes)
    try:
        await state.writer.write_async(OutcomeJob(items, state.sticky.mark_reported))
    except WriteUnavailableError:
        raise _unavailable("the outcomes") from None
    result = batch_result(items)
    for name, count in result.counts.items():
        state.metrics.outcomes.labels(name).inc(count)
    return result


__all__ = ["router"]
