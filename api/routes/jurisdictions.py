"""Merchandisers: what each jurisdiction requires (disclosure, personalization, prior price)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import SessionDep, StateDep, require
from api.schemas.jurisdictions import JurisdictionsIn, JurisdictionsPublic
from api.security import Principal, Role
from api.services.jurisdictions import current_jurisdictions, public, put_jurisdictions

router = APIRouter(prefix="/v1", tags=["merchandiser"])
Reader = Annotated[Principal, Depends(require(Role.MERCHANDISER, Role.ANALYST))]
Merchandiser = Annotated[Principal, Depends(require(Role.MERCHANDISER))]


@router.get("/jurisdictions", response_model=JurisdictionsPublic)
def get_jurisdictions(session: SessionDep, _: Reader) -> JurisdictionsPublic:
    """The jurisdiction rules in force (version null: the shipped defaults)."""
    return public(*current_jurisdictions(session))


@router.put("/jurisdictions", response_model=JurisdictionsPublic)
def put_jurisdictions_route(
    body: JurisdictionsIn, state: StateDep, session: SessionDep, actor: Merchandiser
) -> JurisdictionsPublic:
    """Replace the jurisdiction rules with a new version (audited); quotes use it within a
    refresh. A jurisdiction without a rule of its own follows its country's."""
    out = put_jurisdictions(session, body=body, actor=actor)
    state.jurisdictions.invalidate()
    return out
