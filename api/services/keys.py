"""API keys: creation (shown once), listing, revocation, authentication."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.orm import ApiKey, utcnow
from api.schemas.admin import KeyCreated, KeyPublic
from api.security import Principal, Role, digest_matches, generate_key, key_prefix
from api.services.audit import record_change

__all__ = ["authenticate", "create_key", "find_by_prefix", "list_keys", "revoke_key"]


def create_key(
    session: Session, *, name: str, role: Role, actor: Principal | None,
    pepper: bytes | None = None,
) -> KeyCreated:  # fmt: skip
    """Create a key for ``role``; the returned ``key`` is the only copy of the secret.

    ``pepper`` is the server's ``PRICING_KEY_PEPPER`` (the digest is then keyed with it).
    """
    key, prefix, scheme, digest = generate_key(pepper)
    with session.begin():
        row = ApiKey(id=uuid.uuid4(), name=name, role=role.value, prefix=prefix,
                     key_hash=digest, hash_scheme=scheme)  # fmt: skip
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


def find_by_prefix(session: Session, prefix: str) -> ApiKey:
    """The key whose public prefix is ``prefix`` (with or without ``pe_``).

    Raises
    ------
    NotFound
        When no key, or more than one, has that prefix.
    """
    prefix = prefix.removeprefix("pe_").rstrip("_")
    rows = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).all()
    if len(rows) != 1:
        raise NotFound(["path", "prefix"], f"no single key with prefix {prefix!r}")
    return rows[0]


def authenticate(session: Session, *, key: str, pepper: bytes | None = None) -> Principal | None:
    """Return the principal owning ``key``, or None if it is unknown or revoked.

    The key is found by its public prefix (an index) and its digest compared in constant
    time, so neither the lookup nor the comparison tells how much of a guess was right.
    """
    prefix = key_prefix(key)
    if prefix is None:
        return None
    for row in session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)):
        if digest_matches(key, row.hash_scheme, row.key_hash, pepper):
            if row.revoked_at is not None:
                return None
            return Principal(key_id=row.id, name=row.name, role=Role(row.role))
    return None
