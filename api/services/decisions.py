"""The decision log for analysts: decisions in time order, with their outcomes."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Invalid, NotFound
from api.orm import Decision, Outcome
from api.schemas.decisions import DecisionPage, DecisionPublic
from api.services.outcomes import outcome_public
from pricing.money import from_minor

__all__ = ["get_decision", "list_decisions"]


def _public(decision: Decision, outcome: Outcome | None) -> DecisionPublic:
    money = {
        "list_price": from_minor(decision.list_price_minor, decision.currency),
        "price": from_minor(decision.price_minor, decision.currency),
        "unit_cost": from_minor(decision.unit_cost_minor, decision.currency),
        "discount": from_minor(decision.discount_minor, decision.currency),
        "promotion_cost": from_minor(decision.promotion_cost_minor, decision.currency),
        "promotion_reserved": from_minor(decision.promotion_reserved_minor, decision.currency),
    }
    fields = {
        name: getattr(decision, name)
        for name in DecisionPublic.model_fields
        if name not in {*money, "outcome"}
    }
    return DecisionPublic(
        **fields, **money, outcome=outcome_public(outcome) if outcome is not None else None
    )


def _with_outcomes(session: Session, decisions: list[Decision]) -> list[DecisionPublic]:
    ids = [d.id for d in decisions]
    outcomes = {
        o.decision_id: o
        for o in session.scalars(select(Outcome).where(Outcome.decision_id.in_(ids)))
    }
    return [_public(d, outcomes.get(d.id)) for d in decisions]


def _cursor(decision: Decision) -> str:
    raw = f"{decision.created_at.isoformat()}|{decision.id}"
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def _parse_cursor(after: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(after.encode("ascii")).decode("utf-8")
        stamp, _sep, ident = raw.partition("|")
        cursor_time, cursor_id = datetime.fromisoformat(stamp), uuid.UUID(ident)
        if cursor_time.tzinfo is None:
            raise ValueError("naive cursor time")
    except (ValueError, UnicodeError):
        raise Invalid(["query", "after"], "malformed cursor") from None
    return cursor_time, cursor_id


def list_decisions(
    session: Session,
    *,
    sku: str | None = None,
    segment: str | None = None,
    since: datetime | None = None,
    after: str | None = None,
    limit: int = 100,
) -> DecisionPage:
    """One page of decisions, oldest first, with their outcomes.

    Parameters
    ----------
    sku, segment : str, optional
        Only decisions for this SKU / segment.
    since : datetime, optional
        Only decisions at or after this (timezone-aware) time.
    after : str, optional
        The ``next_after`` cursor of the previous page.
    limit : int
        Page size.

    Raises
    ------
    Invalid
        Naming ``after`` for a malformed cursor.
    """
    query = select(Decision).order_by(Decision.created_at, Decision.id).limit(limit + 1)
    if sku is not None:
        query = query.where(Decision.sku == sku)
    if segment is not None:
        query = query.where(Decision.segment == segment)
    if since is not None:
        query = query.where(Decision.created_at >= since)
    if after is not None:
        cursor_time, cursor_id = _parse_cursor(after)
        query = query.where(
            (Decision.created_at > cursor_time)
            | ((Decision.created_at == cursor_time) & (Decision.id > cursor_id))
        )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return DecisionPage(
        items=_with_outcomes(session, rows), next_after=_cursor(rows[-1]) if more else None
    )


def get_decision(session: Session, decision_id: uuid.UUID) -> DecisionPublic:
    """One decision and its outcome (:class:`NotFound` naming ``decision_id``)."""
    decision = session.get(Decision, decision_id)
    if decision is None:
        raise NotFound(["path", "decision_id"], f"unknown decision {decision_id}")
    return _with_outcomes(session, [decision])[0]
