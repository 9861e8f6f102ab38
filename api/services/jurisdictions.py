"""Jurisdiction rules: stored versions, the API's view, and the quote path's cache."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.cache import TTLCache
from api.errors import FieldProblem, Invalid
from api.orm import JurisdictionVersion
from api.schemas.jurisdictions import JurisdictionsIn, JurisdictionsPublic
from api.security import Principal
from api.services.audit import record_change
from pricing.jurisdictions import DEFAULT_RULES, JurisdictionRules, known

__all__ = ["JurisdictionCache", "current_jurisdictions", "public", "put_jurisdictions"]


def current_jurisdictions(session: Session) -> tuple[int | None, JurisdictionRules]:
    """The newest stored version and its rules (None and the shipped defaults if none)."""
    row = session.scalar(
        select(JurisdictionVersion).order_by(JurisdictionVersion.id.desc()).limit(1)
    )
    if row is None:
        return None, DEFAULT_RULES
    return row.id, JurisdictionRules.from_list(row.rules, row.default_code)


def public(version: int | None, rules: JurisdictionRules) -> JurisdictionsPublic:
    """API view."""
    return JurisdictionsPublic(version=version, default=rules.default, rules=rules.to_list())


def put_jurisdictions(
    session: Session, *, body: JurisdictionsIn, actor: Principal
) -> JurisdictionsPublic:
    """Store a new version (audited). Errors name the offending entry."""
    problems = []
    seen: set[str] = set()
    for i, rule in enumerate(body.rules):
        if not known(rule.code):
            problems.append(FieldProblem(["body", "rules", i, "code"], f"unknown jurisdiction {rule.code!r}"))
        elif rule.code in seen:
            problems.append(FieldProblem(["body", "rules", i, "code"], f"{rule.code} is listed twice"))
        seen.add(rule.code)
    if body.default is not None and not known(body.default):
        problems.append(FieldProblem(["body", "default"], f"unknown jurisdiction {body.default!r}"))
    if problems:
        raise Invalid(problems)
    rules = JurisdictionRules.from_list([r.model_dump() for r in body.rules], body.default)
    with session.begin():
        before_version, before = current_jurisdictions(session)
        row = JurisdictionVersion(rules=rules.to_list(), default_code=rules.default,
                                  created_by=actor.name)  # fmt: skip
        session.add(row)
        session.flush()
        out = public(row.id, rules)
        record_change(
            session, actor=actor, action="create", entity="jurisdictions", entity_id=str(row.id),
            before=public(before_version, before).model_dump(), after=out.model_dump(),
        )  # fmt: skip
    return out


class JurisdictionCache(TTLCache[tuple[int | None, JurisdictionRules]]):
    """The rules ``(version, rules)`` for the quote path, re-read at most every ``ttl`` s."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 1.0) -> None:
        super().__init__(sessions, current_jurisdictions, ttl)
