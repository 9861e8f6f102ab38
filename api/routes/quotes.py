"""Checkout: quotes and outcomes (async: they wait on the worker's group writer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import AppState, StateDep, limited
from api.errors import Conflict, Invalid, NotFound, Unavailable
from api.schemas.outcomes import OutcomeBatchIn, OutcomeBatchOut, OutcomeIn, OutcomePublic
from api.schemas.quotes import QuoteRequest, QuoteResponse
from api.security import Principal, Role
from api.services.idempotency import IDEMPOTENCY_HEADER
from api.services.outcomes import OutcomeJob, batch_json, outcome_items, single_result
from api.services.quote_writes import IdempotentReplayError
from api.writer import WriteUnavailableError

router = APIRouter(prefix="/v1", tags=["checkout"])
QuoteCaller = Annotated[Principal, Depends(limited("quotes", Role.CHECKOUT))]
OutcomeCaller = Annotated[Principal, Depends(limited("outcomes", Role.CHECKOUT))]
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    429: {"description": "This key's rate limit (PRICING_RATE_LIMIT_*) is spent; nothing was "
                         "done. Retry after `Retry-After` seconds."},
    503: {"description": "Could not be committed; nothing was shown or stored. Retry."},
}  # fmt: skip


def _unavailable(what: str) -> Unavailable:
    return Unavailable(f"{what} could not be committed; retry")


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Makes the request safe to retry: a quote made with this key (by the same API "
            "key, within PRICING_IDEMPOTENCY_TTL_SECONDS, default 24 h) is returned again, "
            "with the `Idempotent-Replayed: true` header, instead of a new one. Sending the "
            "key with a different request is a 422. Printable ASCII, at most 255 characters; "
            "a UUID per cart view is a good choice."
        ),
        examples=["c0a8f1e2-5b7d-4c8e-9f10-3a2b1c0d9e8f"],
    ),
]


def _replayed(body: str) -> Response:
    return Response(
        body, status.HTTP_201_CREATED, media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )  # fmt: skip


@router.post(
    "/quotes",
    response_model=QuoteResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"description": "The quote (a replay of the stored one carries "
                             "`Idempotent-Replayed: true`)"},
        **_UNAVAILABLE,
    },
)  # fmt: skip
async def post_quote(
    body: QuoteRequest,
    state: StateDep,
    principal: QuoteCaller,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Price every line of a cart; each line's decision is committed before the response."""
    return await respond_quote(state, body, principal, idempotency_key)


async def respond_quote(
    state: AppState, body: QuoteRequest, principal: Principal, idempotency_key: str | None
) -> Response:
    """The quote endpoint's work once the request is authenticated and validated (shared
    by the route and :class:`api.fast_path.QuoteFastPath`)."""
    if len(body.lines) > state.settings.max_quote_lines:
        raise Invalid(
            ["body", "lines"], f"at most {state.settings.max_quote_lines} lines per quote"
        )
    claim = None
    if idempotency_key is not None:
        claim = state.idempotency.claim(str(principal.key_id), idempotency_key, body)
        recent = state.idempotency.recent(claim)
        if recent is not None:
            return _replayed(recent)
    experiment = state.experiments.for_unit(body.customer_id)
    try:
        quote = await state.quotes.create(
            body,
            policy=state.policy_for(experiment),
            experiment=experiment,
            guardrail_version=state.guardrails.get()[0],
            idempotency=claim,
            key_id=principal.key_id,
        )
    except WriteUnavailableError:
        raise _unavailable("the quote") from None
    except IdempotentReplayError:
        assert claim is not None
        return _replayed(await run_in_threadpool(state.idempotency.stored, claim))
    for line in quote.lines:
        state.metrics.count_decision(line.policy_name, line.personalized)
    # Serialized straight from the model the service built (and validated): FastAPI's
    # response_model pass would validate and encode it a second time.
    encoded = quote.model_dump_json()
    if claim is not None:
        state.idempotency.remember(claim, encoded)
    return Response(encoded, status.HTTP_201_CREATED, media_type="application/json")


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
    body: OutcomeIn, state: StateDep, response: Response, _: OutcomeCaller
) -> OutcomePublic:
    """Report what happened to one decision. Acknowledged only after it is committed."""
    items = outcome_items([body])
    try:
        await state.writer.write_async(
            OutcomeJob(items, state.sticky.mark_reported),
            state.settings.outcome_write_timeout_seconds,
        )
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
async def post_outcome_batch(
    body: OutcomeBatchIn, state: StateDep, _: OutcomeCaller
) -> Response:
    """Report up to 1,000 outcomes at once; each item gets its own status."""
    if len(body.outcomes) > state.settings.max_outcome_batch:
        raise Invalid(
            ["body", "outcomes"],
            f"at most {state.settings.max_outcome_batch} outcomes per batch",
        )
    items = outcome_items(body.outcomes)
    try:
        await state.writer.write_async(
            OutcomeJob(items, state.sticky.mark_reported),
            state.settings.outcome_write_timeout_seconds,
        )
    except WriteUnavailableError:
        raise _unavailable("the outcomes") from None
    encoded, counts = batch_json(items)
    for name, count in counts.items():
        state.metrics.outcomes.labels(name).inc(count)
    # Encoded from plain values (the bytes OutcomeBatchOut would give): FastAPI's
    # response_model pass would build, validate and encode 2,000 objects for a full batch.
    return Response(encoded, media_type="application/json")


__all__ = ["respond_quote", "router"]
