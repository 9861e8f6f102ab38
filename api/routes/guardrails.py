"""Merchandisers: guardrails, the kill switch, and previews of a proposed change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import SessionDep, StateDep, require
from api.schemas.guardrails import (
    GuardrailSetIn,
    GuardrailsPublic,
    PreviewIn,
    PreviewOut,
)
from api.security import Principal, Role
from api.services.guardrails import active_guardrails, put_guardrails
from api.services.preview import preview_guardrails

router = APIRouter(prefix="/v1", tags=["merchandiser"])
Merchandiser = Annotated[Principal, Depends(require(Role.MERCHANDISER))]
Reader = Annotated[Principal, Depends(require(Role.MERCHANDISER, Role.ANALYST))]


@router.get("/guardrails", response_model=GuardrailsPublic | None)
def get_guardrails(session: SessionDep, _: Reader) -> GuardrailsPublic | None:
    """The guardrails in effect (null when none were ever set)."""
    return active_guardrails(session)


@router.put("/guardrails", response_model=GuardrailsPublic)
def set_guardrails(
    body: GuardrailSetIn, session: SessionDep, state: StateDep, actor: Merchandiser
) -> GuardrailsPublic:
    """Replace the guardrails with a new version (validated against the catalog, audited)."""
    stored = put_guardrails(session, body=body, actor=actor)
    state.guardrails.invalidate()
    return stored


@router.post("/guardrails/preview", response_model=PreviewOut)
def preview(body: PreviewIn, session: SessionDep, state: StateDep, _: Merchandiser) -> PreviewOut:
    """Per segment and SKU: the price distribution the policy would serve under the proposal,
    with expected conversion and profit per visitor under the current posterior."""
    return preview_guardrails(
        session, body, served=state.posterior.served, epsilon=state.settings.exploration_epsilon,
        floor=state.settings.min_propensity,
        n_prices=state.settings.price_ladder_size, current=state.guardrails.get()[1],
    )  # fmt: skip


__all__ = ["router"]
