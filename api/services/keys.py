"""API keys: creation (shown once), listing, revocation, authentication."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.orm import ApiKey, utcnow
from api.schemas.admin import KeyCreated, KeyPublic
from api.security import Principal, Role, generate_key, hash_key
from api.services.audit import record_change

__all__ = ["authenticate", "create_key", "list_keys", "revoke_key"]


def create_key(session: Session, *, name: str, role: Role, actor: Principal | None) -> KeyCreated:
    """Create a key for ``role``; the returned ``key`` is the only copy of the secret."""
    key, prefix, digest = generate_key()
    with session.begin():
        row = ApiKey(id=uuid.uuid4(), name=name, role=role.value, prefix=prefix, key_hash=digest)
        session.add(row)
        session.flush()
        record_change(
            session, actor=actor, action="create", entity="api_key", entity_id=str(row.id),
            before=None, after={"name": name, "role": role.value, "prefix": prefix},
        )  # fmt: skip
        return KeyCreated(
            **KeyPublic.model_validate(row, from_attributes=True).model_dump(), key=key
        )


def list_keys(session: Session) -> list[KeyPublic]:
    """All keys, newest first, without secrets."""
    rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc()))
    return [KeyPublic.model_validate(r, from_attributes=True) for r in rows]


def revoke_key(session: Session, *, key_id: uuid.UUID, actor: Principal | None) -> KeyPublic:
    """Revoke a key; it stops working at once on this worker (others within the auth cache TTL)."""
    with session.begin():
        row = session.get(ApiKey, key_id, with_for_update=True)
        if row is None:
            raise NotFound(["path", "key_id"], f"unknown key {key_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            record_change(
                session, actor=actor, action="revoke", entity="api_key", entity_id=str(key_id),
                before={"revoked": False}, after={"revoked": True},
            )  # fmt: skip
        return KeyPublic.model_validate(row, from_attributes=True)


def authenticate(session: Session, *, key: str) -> Principal | None:
    """Return the principal owning ``key``, or None if it is unknown or revoked."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(key_id=row.id, name=row.name, role=Role(row.role))
