"""Admins: API keys and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from api.deps import SessionDep, StateDep, require
from api.schemas.admin import AuditPublic, KeyCreate, KeyCreated, KeyPublic
from api.schemas.common import MAX_ROW_ID
from api.security import Principal, Role
from api.services import audit, keys

router = APIRouter(prefix="/v1", tags=["admin"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


@router.post("/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, session: SessionDep, actor: Admin) -> KeyCreated:
    """Create an API key; the secret is in this response only."""
    return keys.create_key(session, name=body.name, role=Role(body.role), actor=actor)


@router.get("/keys", response_model=list[KeyPublic])
def list_keys(session: SessionDep, _: Admin) -> list[KeyPublic]:
    """All keys, without secrets."""
    return keys.list_keys(session)


@router.delete("/keys/{key_id}", response_model=KeyPublic)
def revoke_key(key_id: uuid.UUID, session: SessionDep, state: StateDep, actor: Admin) -> KeyPublic:
    """Revoke a key."""
    revoked = keys.revoke_key(session, key_id=key_id, actor=actor)
    state.forget_keys()
    return revoked


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
