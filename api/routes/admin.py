"""Admins: API keys and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from api.deps import SessionDep, StateDep, require
from api.schemas.admin import AuditPublic, ErasureOut, KeyCreate, KeyCreated, KeyPublic
from api.schemas.common import MAX_ROW_ID
from api.security import Principal, Role, customer_hash
from api.services import audit, keys
from api.services.erasure import erase_customer

router = APIRouter(prefix="/v1", tags=["admin"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


@router.post("/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, session: SessionDep, state: StateDep, actor: Admin) -> KeyCreated:
    """Create an API key; the secret is in this response only."""
    return keys.create_key(
        session, name=body.name, role=Role(body.role), actor=actor,
        pepper=state.settings.pepper(),
    )  # fmt: skip


@router.get("/keys", response_model=list[KeyPublic])
def list_keys(session: SessionDep, _: Admin) -> list[KeyPublic]:
    """All keys, by public prefix and name (never a secret or a digest)."""
    return keys.list_keys(session)


@router.delete("/keys/{key_id}", response_model=KeyPublic)
def revoke_key(key_id: uuid.UUID, session: SessionDep, state: StateDep, actor: Admin) -> KeyPublic:
    """Revoke a key."""
    revoked = keys.revoke_key(session, key_id=key_id, actor=actor)
    state.forget_keys()
    return revoked


@router.delete("/customers/{customer_id}", response_model=ErasureOut, tags=["privacy"])
def erase(
    customer_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: SessionDep,
    state: StateDep,
    actor: Admin,
) -> ErasureOut:
    """Erase a customer, irreversibly: their identifier becomes a random pseudonym in every
    stored row and the raw context of their decisions is removed; what the engine learned
    (cells, money totals, propensities) stays the same. Audited. Every worker forgets the
    customer within a second; a later quote for the same id starts fresh."""
    result = erase_customer(session, customer_id, actor=actor)
    if state.forget_customers is not None:
        state.forget_customers({customer_hash(customer_id)})
    return ErasureOut(
        pseudonym=result.pseudonym, decisions=result.decisions, exposures=result.exposures,
        promotion_counts=result.promotion_counts, stored_quotes=result.stored_quotes,
    )  # fmt: skip


@router.get("/audit", response_model=list[AuditPublic])
def audit_log(
    session: SessionDep,
    _: Admin,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="page: entries older than this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditPublic]:
    """Audit entries, newest first."""
    return audit.list_audit(session, entity=entity, before_id=before_id, limit=limit)
