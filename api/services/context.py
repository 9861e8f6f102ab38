"""The declared context schema: which request context features the demand model may use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.cache import TTLCache
from api.errors import Invalid
from api.orm import ContextSchemaVersion
from api.schemas.context import ContextSchemaPublic
from api.security import Principal
from api.services.audit import record_change
from pricing.context import ContextSchema, ContextSchemaError

__all__ = ["ContextSchemaCache", "current_schema", "put_context_schema"]


def current_schema(session: Session) -> tuple[int | None, ContextSchema]:
    """The newest declared schema and its version (None and empty when never declared)."""
    row = session.scalar(
        select(ContextSchemaVersion).order_by(ContextSchemaVersion.id.desc()).limit(1)
    )
    if row is None:
        return None, ContextSchema()
    return row.id, ContextSchema.from_dict(row.schema)


def public(version: int | None, schema: ContextSchema) -> ContextSchemaPublic:
    """API view of a schema."""
    return ContextSchemaPublic(
        version=version, features=schema.to_dict()["features"], columns=list(schema.columns)
    )


def put_context_schema(
    session: Session, *, body: dict[str, Any], actor: Principal
) -> ContextSchemaPublic:
    """Validate and store a new schema version (audited). Errors name the offending entry."""
    try:
        schema = ContextSchema.from_dict(body)
    except ContextSchemaError as exc:
        loc: list[str | int] = ["body"]
        for part in exc.field.replace("]", "").replace("[", ".").split("."):
            loc.append(int(part) if part.isdigit() else part)
        raise Invalid(loc, exc.message) from None
    unknown = set(body) - {"features"}
    if unknown:
        raise Invalid(["body", sorted(unknown)[0]], "unknown field")
    with session.begin():
        before_version, before = current_schema(session)
        row = ContextSchemaVersion(created_by=actor.name, schema=schema.to_dict())
        session.add(row)
        session.flush()
        out = public(row.id, schema)
        record_change(
            session, actor=actor, action="create", entity="context_schema", entity_id=str(row.id),
            before=public(before_version, before).model_dump() if before_version else None,
            after=out.model_dump(),
        )  # fmt: skip
    return out


class ContextSchemaCache(TTLCache[tuple[int | None, ContextSchema]]):
    """The schema ``(version, schema)`` for the quote path, re-read at most every ``ttl`` s."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 1.0) -> None:
        super().__init__(sessions, current_schema, ttl)
