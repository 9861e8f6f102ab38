"""The audit log: who changed what, when, with the state before and after."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.orm import AuditEntry
from api.schemas.admin import AuditPublic
from api.security import Principal

__all__ = ["SYSTEM", "list_audit", "record_change"]

#: Actor name for changes made from the command line.
SYSTEM = "cli"


def record_change(
    session: Session,
    *,
    actor: Principal | None,
    action: str,
    entity: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Add an audit entry to the session's transaction (the caller commits).

    Parameters
    ----------
    session : Session
        Open session; the entry is committed with the change it describes.
    actor : Principal or None
        Who made the change; None for the command line.
    action : str
        ``create``, ``update``, ``deactivate``, ``revoke``...
    entity : str
        Kind of object (``product``, ``segment``, ``api_key``).
    entity_id : str
        Its identifier.
    before, after : dict or None
        JSON-serialisable state before and after the change (money as strings).
    """
    session.add(
        AuditEntry(
            actor_key_id=actor.key_id if actor else None,
            actor=actor.name if actor else SYSTEM,
            role=actor.role.value if actor else "admin",
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=before,
            after=after,
        )
    )


def list_audit(
    session: Session, *, entity: str | None = None, before_id: int | None = None, limit: int = 100
) -> list[AuditPublic]:
    """Audit entries, newest first.

    Parameters
    ----------
    entity : str, optional
        Only entries about this kind of entity (``"guardrails"``, ``"api_key"``, ...).
    before_id : int, optional
        Page: only entries older than this id.
    limit : int
        At most this many entries.
    """
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return [AuditPublic.model_validate(e, from_attributes=True) for e in session.scalars(query)]
