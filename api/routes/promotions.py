"""Merchandisers: the promotion catalog. Analysts: the declared context schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response, status

from api.deps import SessionDep, StateDep, require
from api.schemas.common import IDENTIFIER_PATTERN
from api.schemas.context import EXAMPLE_CONTEXT_SCHEMA, ContextSchemaPublic
from api.schemas.promotions import PromotionIn, PromotionPublic
from api.security import Principal, Role
from api.services.context import current_schema, public, put_context_schema
from api.services.promotions import (
    get_promotion,
    list_promotions,
    promotion_versions,
    put_promotion,
)

router = APIRouter(prefix="/v1", tags=["merchandiser"])
Merchandiser = Annotated[Principal, Depends(require(Role.MERCHANDISER))]
Reader = Annotated[Principal, Depends(require(Role.MERCHANDISER, Role.ANALYST))]
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]
Key = Annotated[str, Path(pattern=IDENTIFIER_PATTERN)]


@router.put(
    "/promotions/{key}",
    response_model=PromotionPublic,
    responses={200: {"description": "Updated (new version)"}, 201: {"description": "Created"}},
)
def put_promotion_route(
    key: Key,
    body: PromotionIn,
    session: SessionDep,
    state: StateDep,
    response: Response,
    actor: Merchandiser,
) -> PromotionPublic:
    """Create or replace a promotion; every change is a new version, audited.

    Deactivate with ``"active": false`` (history is kept; promotions are never deleted).
    """
    promotion, created = put_promotion(session, key=key, body=body, actor=actor)
    state.promotions_changed()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return promotion


@router.get("/promotions", response_model=list[PromotionPublic])
def list_promotions_route(session: SessionDep, _: Reader) -> list[PromotionPublic]:
    """Every promotion with its usage: spend, budget held by open offers, redemptions, pacing."""
    return list_promotions(session)


@router.get("/promotions/{key}", response_model=PromotionPublic)
def get_promotion_route(key: Key, session: SessionDep, _: Reader) -> PromotionPublic:
    """One promotion with its usage."""
    return get_promotion(session, key)


@router.get("/promotions/{key}/versions")
def promotion_versions_route(key: Key, session: SessionDep, _: Reader) -> list[dict[str, Any]]:
    """Every version of a promotion, oldest first."""
    return promotion_versions(session, key)


@router.get("/context-schema", response_model=ContextSchemaPublic, tags=["analyst"])
def get_context_schema(session: SessionDep, _: Reader) -> ContextSchemaPublic:
    """The declared context features the demand model may use."""
    return public(*current_schema(session))


@router.put("/context-schema", response_model=ContextSchemaPublic, tags=["analyst"])
def put_context_schema_route(
    state: StateDep,
    session: SessionDep,
    actor: Analyst,
    body: Annotated[dict[str, Any], Body(examples=[EXAMPLE_CONTEXT_SCHEMA])],
) -> ContextSchemaPublic:
    """Declare context features (numeric or categorical). Protected attributes are refused.

    Takes effect for new decisions at once and for the model at its next refit.
    """
    out = put_context_schema(session, body=body, actor=actor)
    state.context_schema.invalidate()
    return out


__all__ = ["router"]
