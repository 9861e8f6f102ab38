"""Outcomes: stored once per decision, acknowledged only after commit.

Idempotency rests on the unique ``outcomes.decision_id``: every insert is
``INSERT ... ON CONFLICT (decision_id) DO NOTHING`` followed by a read of what is stored,
so concurrent retries of one outcome can never store it twice, and the caller learns
whether its values were created, already there (duplicate) or contradict what is there
(conflict).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.errors import Conflict, FieldProblem, Invalid, NotFound
from api.orm import Decision, Outcome, utcnow
from api.schemas.outcomes import BatchItemResult, OutcomeBatchOut, OutcomeIn, OutcomePublic
from api.services.promotion_settlement import outcome_discount, settle_many
from pricing.money import MoneyError, from_minor, to_minor

__all__ = [
    "OutcomeJob",
    "batch_result",
    "outcome_items",
    "record_outcome",
    "record_outcomes",
    "single_result",
]

Status = Literal["created", "duplicate", "conflict", "not_found", "invalid"]


def outcome_public(outcome: Outcome | _Stored) -> OutcomePublic:
    """API view of a stored outcome (built without re-validating what the database holds)."""
    return OutcomePublic.model_construct(
        id=outcome.id,
        decision_id=outcome.decision_id,
        converted=outcome.converted,
        quantity=outcome.quantity,
        revenue=from_minor(outcome.revenue_minor, outcome.currency),
        currency=outcome.currency,
        occurred_at=outcome.occurred_at,
        recorded_at=outcome.recorded_at,
        discount=from_minor(outcome.discount_minor, outcome.currency),
        late=outcome.late,
    )


@dataclass(slots=True)
class _Item:
    index: int
    data: OutcomeIn
    status: Status | None = None
    error: str | None = None
    #: The request field an ``invalid`` item is refused for.
    field: str | None = None
    row: dict[str, Any] | None = None
    stored: Outcome | _Stored | None = None
    decision: Any = None


#: The decision columns an outcome needs.
_DECISION_COLUMNS = (
    Decision.id, Decision.currency, Decision.promotion, Decision.promotion_reserved_minor,
    Decision.discount_minor, Decision.promotion_cost_minor, Decision.quantity,
    Decision.outcome_deadline, Decision.customer_id, Decision.promotion_period,
)  # fmt: skip


_INSERTS: dict[str, Insert] = {}


def _insert_ignoring_duplicates(dialect: str) -> Insert:
    """Core (not ORM) multi-row insert, built once per dialect."""
    statement = _INSERTS.get(dialect)
    if statement is None:
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = _INSERTS[dialect] = (
            module.insert(Outcome.__table__)
            .on_conflict_do_nothing(index_elements=["decision_id"])
            .returning(Outcome.__table__.c.decision_id)
        )
    return statement


@dataclass(slots=True)
class _Stored:
    """An outcome this batch inserted, as stored (the row it wrote)."""

    id: uuid.UUID
    decision_id: uuid.UUID
    converted: bool
    quantity: int
    revenue_minor: int
    currency: str
    occurred_at: datetime
    recorded_at: datetime
    discount_minor: int
    late: bool


def _same(stored: Outcome, row: dict[str, Any]) -> bool:
    """Whether a retry carries the values already stored (``occurred_at`` is not compared:
    a client may stamp each retry afresh)."""
    return (stored.converted, stored.quantity, stored.revenue_minor, stored.discount_minor) == (
        row["converted"],
        row["quantity"],
        row["revenue_minor"],
        row["discount_minor"],
    )


def _process(session: Session, items: Sequence[_Item]) -> None:
    """Validate against decisions, insert, settle and classify every item (in a transaction).

    A fixed number of statements per batch, whatever its size: one read of the decisions,
    one multi-row insert, one read of what is stored, and the settlement's bulk updates.
    """
    ids = list({item.data.decision_id for item in items})
    decisions = {
        row.id: row
        for chunk in range(0, len(ids), 5000)
        for row in session.execute(
            select(*_DECISION_COLUMNS).where(Decision.id.in_(ids[chunk : chunk + 5000]))
        )
    }
    now = utcnow()
    rows: list[dict[str, Any]] = []
    claimed: set[uuid.UUID] = set()
    for item in items:
        data = item.data
        decision = decisions.get(data.decision_id)
        if decision is None:
            item.status, item.error = "not_found", f"unknown decision_id {data.decision_id}"
            continue
        if data.currency is not None and data.currency != decision.currency:
            item.status, item.field = "invalid", "currency"
            item.error = f"currency {data.currency} differs from the decision's {decision.currency}"
            continue
        if data.quantity > decision.quantity:
            # The decision priced (and may have discounted) only the quoted units: more
            # units bought were never offered at that price. Quote the new quantity.
            item.status, item.field = "invalid", "quantity"
            item.error = (f"quantity: {data.quantity} units exceed the {decision.quantity} quoted; "
                          "quote the cart again for the new quantity")  # fmt: skip
            continue
        try:
            revenue_minor = to_minor(data.revenue, decision.currency)
        except MoneyError as exc:
            item.status, item.field, item.error = "invalid", "revenue", f"revenue: {exc}"
            continue
        discount, problem = outcome_discount(
            decision, converted=data.converted, quantity=data.quantity, reported=data.discount
        )
        if problem is not None or discount is None:
            item.status, item.field, item.error = "invalid", "discount", problem
            continue
        item.decision = decision
        item.row = {
            "id": uuid.uuid4(),
            "decision_id": data.decision_id,
            "converted": data.converted,
            "quantity": data.quantity,
            "revenue_minor": revenue_minor,
            "currency": decision.currency,
            "occurred_at": (data.occurred_at or now).astimezone(UTC),
            "recorded_at": now,
            "discount_minor": discount,
            "late": decision.outcome_deadline is not None and now > decision.outcome_deadline,
        }
        if data.decision_id not in claimed:
            claimed.add(data.decision_id)
            rows.append(item.row)
    inserted: set[uuid.UUID] = set()
    if rows:
        connection = session.connection()
        statement = _insert_ignoring_duplicates(connection.dialect.name)
        inserted = {decision for (decision,) in connection.execute(statement, rows)}
    # What this batch inserted is known without reading it back; only retries and
    # conflicts (a row already stored) are read, to compare with what they carry.
    stored: dict[uuid.UUID, Any] = {
        r["decision_id"]: _Stored(**r) for r in rows if r["decision_id"] in inserted
    }
    others = [r["decision_id"] for r in rows if r["decision_id"] not in inserted]
    for chunk in range(0, len(others), 5000):
        for o in session.scalars(
            select(Outcome).where(Outcome.decision_id.in_(others[chunk : chunk + 5000]))
        ):
            stored[o.decision_id] = o
    created = []
    for item in items:
        if item.status is not None or item.row is None:
            continue
        outcome = stored[item.data.decision_id]
        item.stored = outcome
        if outcome.id == item.row["id"]:
            item.status = "created"
            if item.decision is not None and item.decision.promotion is not None:
                created.append((item.decision, outcome))
        elif _same(outcome, item.row):
            item.status = "duplicate"
        else:
            item.status = "conflict"
            item.error = "a different outcome is already stored for this decision"
    if created:
        settle_many(session, created)


class OutcomeJob:
    """Outcomes for the group writer: one request's items (a single outcome or a batch)."""

    kind: ClassVar[str] = "outcome"

    def __init__(self, items: list[_Item], on_commit: Any = None) -> None:
        self.items = items
        self.on_commit = on_commit

    @property
    def rows(self) -> int:
        """Rows this job counts for in a batch."""
        return max(1, len(self.items))

    @classmethod
    def write_batch(cls, session: Session, jobs: Sequence[Any]) -> None:
        """Process every job's items together (their statuses land on the items)."""
        _process(session, [item for job in jobs for item in job.items])

    def result(self) -> list[_Item]:
        """The classified items."""
        return self.items

    def committed(self) -> None:
        """Tell the worker's sticky map which decisions now have outcomes."""
        if self.on_commit is not None:
            self.on_commit([i.data.decision_id for i in self.items if i.status == "created"])

    def reset(self) -> None:
        """Forget what a rolled-back attempt found (the writer calls it before each)."""
        for item in self.items:
            item.status = item.error = item.field = item.row = item.stored = item.decision = None

    def failed(self, error: BaseException) -> None:
        """Nothing was stored; the caller may retry."""
        self.reset()


def outcome_items(outcomes: Sequence[OutcomeIn]) -> list[_Item]:
    """Items for :class:`OutcomeJob`, in request order."""
    return [_Item(i, data) for i, data in enumerate(outcomes)]


def single_result(item: _Item) -> tuple[OutcomePublic, bool]:
    """The response of ``POST /v1/outcomes`` for a processed item (raises the 4xx errors)."""
    if item.status == "not_found":
        raise NotFound(["body", "decision_id"], item.error or "")
    if item.status == "invalid":
        raise Invalid(["body", item.field or "decision_id"], item.error or "")
    assert item.stored is not None
    public = outcome_public(item.stored)
    if item.status == "conflict":
        raise Conflict(
            [FieldProblem(["body", "decision_id"], item.error or "", "conflict")],
            extra={"stored": public.model_dump(mode="json")},
        )
    return public, item.status == "created"


def batch_result(items: Sequence[_Item]) -> OutcomeBatchOut:
    """The response of ``POST /v1/outcomes/batch`` for processed items."""
    results = []
    counts: dict[str, int] = {}
    for item in items:
        assert item.status is not None
        counts[item.status] = counts.get(item.status, 0) + 1
        results.append(
            BatchItemResult.model_construct(
                index=item.index,
                decision_id=item.data.decision_id,
                status=item.status,
                outcome=outcome_public(item.stored) if item.stored is not None else None,
                error=item.error,
            )
        )
    return OutcomeBatchOut(results=results, counts=counts)


def record_outcome(session: Session, *, data: OutcomeIn) -> tuple[OutcomePublic, bool]:
    """Store one outcome idempotently in its own transaction (callers without a writer).

    Returns
    -------
    tuple
        The stored outcome and whether this call created it (False: identical retry).

    Raises
    ------
    NotFound
        An unknown decision.
    Conflict
        A second outcome that differs from the stored one (which the error carries).
    Invalid
        A currency or revenue that does not fit the decision.
    """
    item = _Item(0, data)
    with session.begin():
        _process(session, [item])
    return single_result(item)


def record_outcomes(session: Session, *, outcomes: Sequence[OutcomeIn]) -> OutcomeBatchOut:
    """Store a batch in one transaction and report each item's status (without a writer)."""
    items = outcome_items(outcomes)
    with session.begin():
        _process(session, items)
    return batch_result(items)
