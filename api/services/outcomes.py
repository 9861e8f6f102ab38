"""Outcomes: stored once per decision, acknowledged only after commit.

Idempotency rests on the unique ``outcomes.decision_id``: every insert is
``INSERT ... ON CONFLICT (decision_id) DO NOTHING`` followed by a read of what is stored,
so concurrent retries of one outcome can never store it twice, and the caller learns
whether its values were created, already there (duplicate) or contradict what is there
(conflict).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Conflict, FieldProblem, Invalid, NotFound
from api.orm import Outcome, time_ordered_ids, utcnow
from api.schemas.outcomes import BatchItemResult, OutcomeBatchOut, OutcomeIn, OutcomePublic
from api.services.promotion_settlement import outcome_discount, settle_many
from api.services.raw_sql import RawSQL
from pricing.money import MoneyError, from_minor, to_minor

__all__ = [
    "OutcomeJob",
    "batch_json",
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
    data: OutcomeIn | _WireOutcome
    status: Status | None = None
    error: str | None = None
    #: The request field an ``invalid`` item is refused for.
    field: str | None = None
    row: _Stored | None = None
    stored: Outcome | _Stored | None = None
    decision: Any = None


#: The decision columns an outcome needs, in :class:`_DecisionRow` order (``id`` first).
_DECISION_COLUMNS = (
    "id", "currency", "promotion", "promotion_reserved_minor", "discount_minor",
    "promotion_cost_minor", "quantity", "outcome_deadline", "customer_id", "promotion_period",
)  # fmt: skip

#: The outcome columns written, in :class:`_Stored` order, with their PostgreSQL types.
_OUTCOME_COLUMNS = (
    ("id", "uuid"), ("decision_id", "uuid"), ("converted", "boolean"), ("quantity", "integer"),
    ("revenue_minor", "bigint"), ("currency", "varchar"), ("occurred_at", "timestamptz"),
    ("recorded_at", "timestamptz"), ("discount_minor", "bigint"), ("late", "boolean"),
)  # fmt: skip


@dataclass(slots=True)
class _DecisionRow:
    """What an outcome needs of its decision (read on the driver, see :mod:`raw_sql`)."""

    id: uuid.UUID
    currency: str
    promotion: str | None
    promotion_reserved_minor: int
    discount_minor: int
    promotion_cost_minor: int
    quantity: int
    outcome_deadline: datetime | None
    customer_id: str
    promotion_period: str | None


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


def _same(stored: Outcome | _Stored, new: _Stored) -> bool:
    """Whether a retry carries the values already stored (``occurred_at`` is not compared:
    a client may stamp each retry afresh)."""
    return (stored.converted, stored.quantity, stored.revenue_minor, stored.discount_minor) == (
        new.converted,
        new.quantity,
        new.revenue_minor,
        new.discount_minor,
    )


def _read_decisions(
    session: Session, raw: RawSQL, ids: list[uuid.UUID]
) -> dict[uuid.UUID, _DecisionRow]:
    """The decisions ``ids`` name (those that exist), by id."""
    by_key = {raw.uuid(i): i for i in ids}
    found: dict[uuid.UUID, _DecisionRow] = {}
    deadlines: dict[Any, datetime | None] = {}  # a quote's lines share one deadline
    for row in raw.select_in(session, "decisions", _DECISION_COLUMNS, "id", list(by_key)):
        decision_id = by_key[row[0]]
        deadline = deadlines.get(row[7], _MISSING)
        if deadline is _MISSING:
            deadline = deadlines[row[7]] = raw.read_timestamp(row[7])
        found[decision_id] = _DecisionRow(
            decision_id, row[1], row[2], int(row[3]), int(row[4]), int(row[5]), int(row[6]),
            deadline, row[8], row[9],
        )  # fmt: skip
    return found


_MISSING: Any = object()


def _insert(session: Session, raw: RawSQL, rows: list[_Stored]) -> set[uuid.UUID]:
    """Insert ``rows`` (one per decision), skipping decisions that already have an
    outcome; the decisions whose row this call stored."""
    texts: dict[datetime, Any] = {}  # most rows share one recorded_at (and occurred_at)

    def stamp(value: datetime) -> Any:
        text = texts.get(value)
        if text is None:
            text = texts[value] = raw.timestamp(value)
        return text

    values = [
        (raw.uuid(r.id), raw.uuid(r.decision_id), r.converted, r.quantity, r.revenue_minor,
         r.currency, stamp(r.occurred_at), stamp(r.recorded_at), r.discount_minor, r.late)
        for r in rows
    ]  # fmt: skip
    inserted = raw.insert_ignoring(
        session, "outcomes", [c for c, _ in _OUTCOME_COLUMNS], [t for _, t in _OUTCOME_COLUMNS],
        "decision_id", values,
    )  # fmt: skip
    if inserted == len(rows):
        return {r.decision_id for r in rows}
    # Some decisions already had an outcome: ours are those that carry the ids we chose.
    ours = {raw.uuid(r.id): r.decision_id for r in rows}
    stored = raw.select_in(session, "outcomes", ("id",), "decision_id",
                           [raw.uuid(r.decision_id) for r in rows])  # fmt: skip
    return {ours[row[0]] for row in stored if row[0] in ours}


def _process(session: Session, items: Sequence[_Item]) -> None:
    """Validate against decisions, insert, settle and classify every item (in a transaction).

    A fixed number of statements per batch, whatever its size: one read of the decisions,
    one multi-row insert (and a read of what is stored only when some decision already had
    an outcome), and the settlement's bulk updates. The read and the insert run on the
    driver (:mod:`api.services.raw_sql`).
    """
    raw = RawSQL.of(session)
    decisions = _read_decisions(session, raw, list({item.data.decision_id for item in items}))
    now = utcnow()
    rows: list[_Stored] = []
    claimed: set[uuid.UUID] = set()
    ids = iter(time_ordered_ids(len(items)))
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
        item.row = _Stored(
            next(ids), data.decision_id, data.converted, data.quantity, revenue_minor,
            decision.currency,
            now if data.occurred_at is None else data.occurred_at.astimezone(UTC), now,
            discount, decision.outcome_deadline is not None and now > decision.outcome_deadline,
        )  # fmt: skip
        if data.decision_id not in claimed:
            claimed.add(data.decision_id)
            rows.append(item.row)
    inserted = _insert(session, raw, rows) if rows else set()
    # What this batch inserted is known without reading it back; only retries and
    # conflicts (a row already stored) are read, to compare with what they carry.
    stored: dict[uuid.UUID, Outcome | _Stored] = {
        r.decision_id: r for r in rows if r.decision_id in inserted
    }
    others = [r.decision_id for r in rows if r.decision_id not in inserted]
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
        if outcome.id == item.row.id:
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

    def __getstate__(self) -> dict[str, Any]:
        """What the writer process needs (:mod:`api.writer_process`): each item's index and
        values as plain numbers, bytes and text (pickling UUID, Decimal and datetime objects,
        or the request models, cost about twice as much), no callback."""
        return {"items": [(i.index, i.data.decision_id.bytes, i.data.converted, i.data.quantity,
                           str(i.data.revenue), i.data.currency, _micros(i.data.occurred_at),
                           None if i.data.discount is None else str(i.data.discount))
                          for i in self.items]}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.on_commit = None
        self.items = [
            _Item(index, _WireOutcome(uuid.UUID(bytes=decision), converted, quantity,
                                      Decimal(revenue), currency, _instant(occurred),
                                      None if discount is None else Decimal(discount)))
            for index, decision, converted, quantity, revenue, currency, occurred, discount
            in state["items"]
        ]  # fmt: skip

    def report(self) -> list[tuple[Any, ...]]:
        """In the writer process, after the commit: each item's status and stored row (as
        plain values; the decision id is the item's own)."""
        return [(i.status, i.error, i.field, None if (o := i.stored) is None else (
                    o.id.bytes, o.converted, o.quantity, o.revenue_minor, o.currency,
                    _micros(o.occurred_at), _micros(o.recorded_at), o.discount_minor, o.late))
                for i in self.items]  # fmt: skip

    def absorb(self, report: list[tuple[Any, ...]]) -> None:
        """In the API process: take in the writer process's :meth:`report`."""
        for item, (status, error, field_, row) in zip(self.items, report, strict=True):
            item.status, item.error, item.field = status, error, field_
            if row is not None:
                oid, converted, quantity, revenue, currency, occurred, recorded, discount, late = row
                item.stored = _Stored(uuid.UUID(bytes=oid), item.data.decision_id, converted,
                                      quantity, revenue, currency,
                                      _EPOCH + occurred * _MICROSECOND,
                                      _EPOCH + recorded * _MICROSECOND, discount, late)  # fmt: skip

    def reset(self) -> None:
        """Forget what a rolled-back attempt found (the writer calls it before each)."""
        for item in self.items:
            item.status = item.error = item.field = item.row = item.stored = item.decision = None

    def failed(self, error: BaseException) -> None:
        """Nothing was stored; the caller may retry."""
        self.reset()


#: The fields of an outcome that the writer uses (:meth:`OutcomeJob.__getstate__`).
_WIRE_FIELDS = ("decision_id", "converted", "quantity", "revenue", "currency", "occurred_at", "discount")


@dataclass(slots=True)
class _WireOutcome:
    """An outcome's values as the writer process receives them (what ``_process`` reads)."""

    decision_id: uuid.UUID
    converted: bool
    quantity: int
    revenue: Any
    currency: str | None
    occurred_at: datetime | None
    discount: Any


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(when: datetime | None) -> int | None:
    """Microseconds since the Unix epoch of an aware timestamp (exact; None stays None)."""
    return None if when is None else (when - _EPOCH) // _MICROSECOND


def _instant(micros: int | None) -> datetime | None:
    """Inverse of :func:`_micros`: an aware UTC timestamp."""
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


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


def batch_json(items: Sequence[_Item]) -> tuple[bytes, dict[str, int]]:
    """The body of ``POST /v1/outcomes/batch`` for processed items, and the counts.

    The same bytes as ``batch_result(items).model_dump_json()`` (a test holds them equal),
    written from templates: building and encoding the models cost ~20 µs an item, most of
    a 1,000-item batch's response. Every value placed raw is a UUID, a number, a decimal,
    a boolean, a status or a timestamp; text that could need escaping (currency codes,
    error messages) goes through ``json.dumps``.
    """
    counts: dict[str, int] = {}
    parts: list[str] = []
    texts: dict[Any, str] = {}

    def when(value: datetime) -> str:
        text = texts.get(value)
        if text is None:
            text = texts[value] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return text

    def quoted(value: str) -> str:
        text = texts.get(value)
        if text is None:
            text = texts[value] = json.dumps(value, ensure_ascii=False)
        return text

    def money(minor: int, currency: str) -> str:
        key = (minor, currency)
        text = texts.get(key)
        if text is None:  # a batch's amounts repeat (prices, zero discounts)
            text = texts[key] = str(from_minor(minor, currency))
        return text

    for item in items:
        status = item.status
        assert status is not None
        counts[status] = counts.get(status, 0) + 1
        decision_id = str(item.data.decision_id)
        error = "null" if item.error is None else json.dumps(item.error, ensure_ascii=False)
        o = item.stored
        if o is None:
            parts.append(f'{{"index":{item.index},"decision_id":"{decision_id}",'
                         f'"status":"{status}","outcome":null,"error":{error}}}')  # fmt: skip
            continue
        currency = o.currency
        parts.append(
            f'{{"index":{item.index},"decision_id":"{decision_id}","status":"{status}",'
            f'"outcome":{{"id":"{o.id}","decision_id":"{decision_id}",'
            f'"converted":{"true" if o.converted else "false"},"quantity":{int(o.quantity)},'
            f'"revenue":"{money(o.revenue_minor, currency)}","currency":{quoted(currency)},'
            f'"occurred_at":"{when(o.occurred_at)}","recorded_at":"{when(o.recorded_at)}",'
            f'"discount":"{money(o.discount_minor, currency)}",'
            f'"late":{"true" if o.late else "false"}}},"error":{error}}}'
        )  # fmt: skip
    body = ('{"results":[' + ",".join(parts) + '],"counts":'
            + json.dumps(counts, separators=(",", ":")) + "}")
    return body.encode(), counts


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
