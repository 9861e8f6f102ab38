"""What a quote writes, and how the writer writes many quotes in one transaction.

A :class:`QuoteJob` carries the decision rows of one quote, its experiment rows, its
offers and its price observations. :meth:`QuoteJob.write_batch` writes a whole batch:

0. idempotency keys: one conditional insert for the batch's keys (a key already taken
   by a committed quote marks its job **replayed**: it writes nothing and its request
   returns the stored quote);
1. per-customer limits: one conditional upsert per offer
   (``used = used + 1 WHERE used + 1 <= limit``); a quote whose claim fails is
   **rejected** alone (its other claims undone) and re-decided by its request without
   that promotion;
2. leases: the batch's holds per lease in one conditional ``UPDATE`` (only while the
   lease is open and the holds fit); if that fails, quote by quote;
3. decisions, assignments and exposures: multi-row inserts;
4. running totals: open holds and eligible traffic per promotion, and the per-SKU daily
   price aggregates (api/hot/prices.py), one statement each.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.hot.offer_book import adjust_customer_usage
from api.hot.prices import upsert_daily_prices
from api.orm import (
    Decision,
    DecisionAssignment,
    ExperimentExposure,
    PromotionCustomerUsage,
    PromotionLease,
    QuoteIdempotency,
)
from api.services.raw_sql import RawSQL, table_columns
from pricing.daily_prices import DayPrices, PriceBook

__all__ = [
    "IdempotencyClaim",
    "IdempotentReplayError",
    "OfferClaim",
    "OfferRejectedError",
    "QuoteJob",
    "StickyConflictError",
]


class IdempotentReplayError(Exception):
    """A committed quote already holds this job's idempotency key: return that quote."""

    def __init__(self, scope: str, key: str) -> None:
        super().__init__(f"idempotency key {key!r} is already used")
        self.scope = scope
        self.key = key


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A quote's ``Idempotency-Key``: scoped to the API key, with the request's hash."""

    scope: str
    key: str
    request_hash: str
    expires_at: datetime
    #: Whose quote it is (the workers' memory of it is dropped when they are erased).
    customer: str | None = None


class StickyConflictError(Exception):
    """The customer already holds an unexpired, unreported decision for a SKU this quote
    decided afresh (made by another worker, or before this one started): read it and
    price the cart again, repeating it."""

    def __init__(self, skus: set[str]) -> None:
        super().__init__(f"unexpired decisions exist for {', '.join(sorted(skus))}")
        self.skus = skus


class OfferRejectedError(Exception):
    """A quote's offers no longer fit (a customer limit or a lease): re-decide without them."""

    def __init__(self, keys: set[str], limits: set[str] | None = None) -> None:
        super().__init__(f"offers no longer available: {', '.join(sorted(keys))}")
        self.keys = keys
        #: The keys refused because the customer reached the per-customer limit.
        self.limits = limits or set()


@dataclass(frozen=True, slots=True)
class OfferClaim:
    """One offer of a quote: its promotion, hold and limits."""

    key: str
    reserve_minor: int
    lease_id: uuid.UUID | None
    customer_id: str
    period: str | None
    customer_limit: int | None


@dataclass(frozen=True, slots=True)
class _StoredResponse:
    """A quote's response as an idempotency key stores it (sent to the writer process)."""

    quote_id: Any
    body: str

    def model_dump_json(self) -> str:
        """The stored body (as :meth:`QuoteResponse.model_dump_json`)."""
        return self.body


@dataclass
class QuoteJob:
    """One quote's rows for the group writer (see the module docstring)."""

    decisions: list[dict[str, Any]]
    assignments: list[dict[str, Any]]
    exposures: list[dict[str, Any]]
    offers: list[OfferClaim]
    prices: list[tuple[str, datetime, int, int]]
    eligible: dict[str, int]
    now: datetime
    response: Any
    on_commit: Callable[[], None] | None = None
    on_failure: Callable[[], None] | None = None
    #: (customer, SKU) pairs decided afresh that this worker's sticky map could not vouch
    #: for: the writer checks them against the log inside its transaction.
    unverified: list[tuple[str, str]] = field(default_factory=list)
    idempotency: IdempotencyClaim | None = None
    replayed: bool = False
    rejected: set[str] = field(default_factory=set)
    rejected_limits: set[str] = field(default_factory=set)
    sticky_conflicts: set[str] = field(default_factory=set)

    kind: ClassVar[str] = "quote"

    @property
    def rows(self) -> int:
        """Rows this job counts for in a batch."""
        return max(1, len(self.decisions))

    def reset(self) -> None:
        """Forget what a rolled-back attempt decided (the writer calls it before each)."""
        self.replayed = False
        self.rejected.clear()
        self.rejected_limits.clear()
        self.sticky_conflicts.clear()

    @property
    def refused(self) -> bool:
        """The job wrote nothing: its request decides again or returns the stored quote."""
        return bool(self.replayed or self.rejected or self.sticky_conflicts)

    def result(self) -> Any:
        """The response, or the error that makes the request decide again
        (:class:`StickyConflictError`, :class:`OfferRejectedError`) or return the quote
        already stored under its idempotency key (:class:`IdempotentReplayError`)."""
        if self.replayed:
            assert self.idempotency is not None
            raise IdempotentReplayError(self.idempotency.scope, self.idempotency.key)
        if self.sticky_conflicts:
            raise StickyConflictError(self.sticky_conflicts)
        if self.rejected:
            raise OfferRejectedError(self.rejected, self.rejected_limits)
        return self.response

    def __getstate__(self) -> dict[str, Any]:
        """What the writer process needs (:mod:`api.writer_process`): the rows, not the
        callbacks, and of the response only what an idempotency key stores."""
        state = dict(self.__dict__)
        state["on_commit"] = state["on_failure"] = None
        response = self.response
        state["response"] = (
            None if self.idempotency is None
            else _StoredResponse(response.quote_id, response.model_dump_json())
        )  # fmt: skip
        return state

    def report(self) -> tuple[bool, set[str], set[str], set[str]]:
        """In the writer process, after the commit: what refused the job, if anything."""
        return self.replayed, self.rejected, self.rejected_limits, self.sticky_conflicts

    def absorb(self, report: tuple[bool, set[str], set[str], set[str]]) -> None:
        """In the API process: take in the writer process's :meth:`report`."""
        self.replayed, rejected, limits, conflicts = report
        self.rejected, self.rejected_limits, self.sticky_conflicts = set(rejected), set(limits), set(conflicts)

    def committed(self) -> None:
        """After the commit (or after a rejection, which wrote nothing)."""
        if self.refused:
            if self.on_failure is not None:
                self.on_failure()
        elif self.on_commit is not None:
            self.on_commit()

    def failed(self, error: BaseException) -> None:
        """Nothing was committed."""
        del error
        if self.on_failure is not None:
            self.on_failure()

    # ------------------------------------------------------------------ batch
    @classmethod
    def write_batch(cls, session: Session, jobs: Sequence[Any]) -> None:
        """Write ``jobs`` (QuoteJobs) inside the open transaction."""
        batch: list[QuoteJob] = list(jobs)
        now = max(j.now for j in batch)
        dialect = session.get_bind().dialect.name
        module: Any = postgresql if dialect == "postgresql" else sqlite
        claimed = _claim_idempotency(session, module, batch, now)
        _check_sticky(session, [j for j in batch if not j.replayed])
        for job in batch:
            if not job.refused:
                _claim_customer_limits(session, module, job)
        _use_leases(session, [j for j in batch if not j.refused])
        accepted = [j for j in batch if not j.refused]
        _release_idempotency(session, [j for j in claimed if j.refused])
        connection = session.connection()  # Core executemany: no ORM bulk machinery
        decisions = [row for j in accepted for row in j.decisions]
        if decisions:  # on the driver: ~36 columns a row, the batch's biggest insert
            RawSQL(dialect).insert_rows(session, "decisions", _DECISION_COLUMNS, decisions)
        assignments = [row for j in accepted for row in j.assignments]
        if assignments:
            connection.execute(_ASSIGNMENTS, assignments)
        exposures = [row for j in accepted for row in j.exposures]
        if exposures:
            session.execute(
                module.insert(ExperimentExposure).on_conflict_do_nothing(
                    index_elements=["experiment_key", "unit_id"]
                ),
                _unique(exposures, ("experiment_key", "unit_id")),
            )
        _promotion_totals(session, accepted, now)
        book = PriceBook()
        for job in accepted:
            for sku, at, price, final in job.prices:
                book.observe(sku, at, price, final)
        days: list[DayPrices] = [
            row for job in accepted for sku, at, _p, _f in job.prices
            if (row := book.day(sku, at.date())) is not None
        ]  # fmt: skip
        upsert_daily_prices(session, _unique_days(days), now)


_DECISION_COLUMNS = table_columns(Decision.__table__)
_IDEMPOTENCY = QuoteIdempotency.__table__.c


def _claim_idempotency(
    session: Session, module: Any, jobs: list[QuoteJob], now: datetime
) -> list[QuoteJob]:
    """Take the batch's idempotency keys; the jobs whose key is held are replayed.

    One insert for the batch: a key held by a committed, unexpired quote is left alone
    (on PostgreSQL a key another worker is committing waits for that commit) and its job
    marked replayed; an expired key is taken over. Two jobs of one batch with one key:
    the first writes, the second replays it. Returns the jobs that took their key.
    """
    keyed: dict[tuple[str, str], QuoteJob] = {}
    for job in jobs:
        claim = job.idempotency
        if claim is None:
            continue
        slot = (claim.scope, claim.key)
        if slot in keyed:
            job.replayed = True
        else:
            keyed[slot] = job
    if not keyed:
        return []
    rows = [
        {"scope": c.scope, "key": c.key, "request_hash": c.request_hash,
         "quote_id": job.response.quote_id, "response": job.response.model_dump_json(),
         "created_at": now, "expires_at": c.expires_at}
        for job in keyed.values() if (c := job.idempotency) is not None
    ]  # fmt: skip
    table = QuoteIdempotency.__table__
    statement = module.insert(table).values(sorted(rows, key=lambda r: (r["scope"], r["key"])))
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={name: statement.excluded[name] for name in
              ("request_hash", "quote_id", "response", "created_at", "expires_at")},
        where=_IDEMPOTENCY.expires_at <= statement.excluded.created_at,
    ).returning(_IDEMPOTENCY.scope, _IDEMPOTENCY.key)  # fmt: skip
    taken = {(scope, key) for scope, key in session.connection().execute(statement)}
    for slot, job in keyed.items():
        if slot not in taken:
            job.replayed = True
    return [job for slot, job in keyed.items() if slot in taken]


def _release_idempotency(session: Session, jobs: list[QuoteJob]) -> None:
    """Give back the keys of jobs refused after they took them (they decide again)."""
    for job in jobs:
        claim = job.idempotency
        assert claim is not None
        session.connection().execute(
            QuoteIdempotency.__table__.delete().where(  # type: ignore[attr-defined]
                _IDEMPOTENCY.scope == claim.scope, _IDEMPOTENCY.key == claim.key
            )
        )
def _open_decisions(
    session: Session, raw: RawSQL, customers: Sequence[str], now: datetime
) -> list[tuple[str, str, datetime]]:
    """(customer, SKU, expiry) of the live decisions without an outcome of ``customers``.

    On the driver (:mod:`api.services.raw_sql`): SQLAlchemy compiling the expanding
    ``IN`` and processing each bound and returned value cost the writer more than the
    indexed read (customer x SKU x expiry) itself.
    """
    cursor = session.connection().connection.cursor()
    head = ("SELECT d.customer_id, d.sku, d.expires_at FROM decisions AS d "
            "LEFT OUTER JOIN outcomes AS o ON o.decision_id = d.id WHERE ")  # fmt: skip
    tail = " AND d.expires_at > {mark} AND o.id IS NULL"
    out: list[tuple[str, str, datetime]] = []
    try:
        if raw.postgres:
            cursor.execute(head + "d.customer_id = ANY(%s)" + tail.format(mark="%s"),
                           (list(customers), raw.timestamp(now)))  # fmt: skip
            rows = cursor.fetchall()
        else:
            rows = []
            for start in range(0, len(customers), 500):
                chunk = list(customers[start : start + 500])
                marks = ",".join("?" * len(chunk))
                cursor.execute(head + f"d.customer_id IN ({marks})" + tail.format(mark="?"),
                               [*chunk, raw.timestamp(now)])  # fmt: skip
                rows.extend(cursor.fetchall())
        for customer, sku, expires in rows:
            stamp = raw.read_timestamp(expires)
            assert stamp is not None  # expires_at is NOT NULL
            out.append((customer, sku, stamp))
        return out
    finally:
        cursor.close()


def _check_sticky(session: Session, jobs: list[QuoteJob]) -> None:
    """Refuse the jobs that would give a customer a second live decision for a SKU.

    One indexed read (customer × SKU × expiry) for the whole batch replaces a read per
    quote on the event loop; inside the write transaction it also sees what other
    workers committed just before. Two quotes of one batch for the same customer and SKU
    are caught here too: the later one decides again and repeats the first.
    """
    wanted = [j for j in jobs if j.unverified]
    if not wanted:
        return
    customers = sorted({c for j in wanted for c, _ in j.unverified})
    now = min(j.now for j in wanted)
    live: dict[tuple[str, str], datetime] = {}
    for customer, sku, expires in _open_decisions(session, RawSQL.of(session), customers, now):
        previous = live.get((customer, sku))
        live[(customer, sku)] = expires if previous is None else max(previous, expires)
    seen: set[tuple[str, str]] = set()
    for job in jobs:
        for pair in job.unverified:
            until = live.get(pair)
            if (until is not None and until > job.now) or pair in seen:
                job.sticky_conflicts.add(pair[1])
        if not job.sticky_conflicts:
            seen.update(job.unverified)


_ASSIGNMENTS = insert(DecisionAssignment.__table__)  # type: ignore[arg-type]


def _unique(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(tuple(row[k] for k in keys), row)
    return sorted(seen.values(), key=lambda r: tuple(str(r[k]) for k in keys))


def _unique_days(rows: list[DayPrices]) -> list[DayPrices]:
    # Sorted: every writer takes the rows' locks in one order (no deadlock between workers).
    return sorted({(r.sku, r.day): r for r in rows}.values(), key=lambda r: (r.sku, r.day))


_CLAIMS: dict[str, Any] = {}


def _claim_statement(module: Any) -> Any:
    name = module.__name__
    statement = _CLAIMS.get(name)
    if statement is None:
        table = PromotionCustomerUsage.__table__
        statement = _CLAIMS[name] = (
            module.insert(table)
            .values(key=bindparam("key"), customer_id=bindparam("customer"),
                    period=bindparam("period"), used=1)
            .on_conflict_do_update(
                index_elements=["key", "customer_id", "period"],
                set_={"used": table.c.used + 1},
                where=table.c.used + 1 <= bindparam("limit"),
            )
            .returning(table.c.used)
        )  # fmt: skip
    return statement


def _claim_customer_limits(session: Session, module: Any, job: QuoteJob) -> None:
    claimed: list[OfferClaim] = []
    for offer in job.offers:
        if offer.customer_limit is None or offer.period is None:
            continue
        parameters = {"key": offer.key, "customer": offer.customer_id, "period": offer.period,
                      "limit": offer.customer_limit}  # fmt: skip
        if session.connection().execute(_claim_statement(module), parameters).first() is None:
            job.rejected.add(offer.key)
            job.rejected_limits.add(offer.key)
            break
        claimed.append(offer)
    if job.rejected:
        _undo_claims(session, claimed)


_LEASE = PromotionLease.__table__.c
_LEASE_USE = (
    update(PromotionLease.__table__)  # type: ignore[arg-type]
    .where(
        _LEASE.id == bindparam("lease"), _LEASE.closed_at.is_(None),
        _LEASE.budget_minor.is_(None) | (_LEASE.used_minor + bindparam("money") <= _LEASE.budget_minor),
        _LEASE.offers.is_(None) | (_LEASE.used_offers + bindparam("n") <= _LEASE.offers),
    )
    .values(used_minor=_LEASE.used_minor + bindparam("money"),
            used_offers=_LEASE.used_offers + bindparam("n"))
)  # fmt: skip
_RAW_TOTALS = (
    "UPDATE promotion_usage SET held_minor = held_minor + ?, open_offers = open_offers + ?, "
    "eligible_visits = eligible_visits + ?, first_eligible_at = CASE WHEN ? > 0 "
    "THEN coalesce(first_eligible_at, ?) ELSE first_eligible_at END WHERE key = ?"
)


def _lease_update(session: Session, lease_id: uuid.UUID, money: int, offers: int) -> bool:
    result: Any = session.connection().execute(
        _LEASE_USE, {"lease": lease_id, "money": money, "n": offers}
    )
    return bool(result.rowcount == 1)


def _undo_claims(session: Session, offers: Sequence[OfferClaim]) -> None:
    changes: dict[tuple[str, str, str], int] = {}
    for offer in offers:
        if offer.customer_limit is not None and offer.period is not None:
            slot = (offer.key, offer.customer_id, offer.period)
            changes[slot] = changes.get(slot, 0) - 1
    adjust_customer_usage(session, changes)


def _use_leases(session: Session, jobs: list[QuoteJob]) -> None:
    by_lease: dict[uuid.UUID, list[tuple[QuoteJob, OfferClaim]]] = {}
    for job in jobs:
        for offer in job.offers:
            if offer.lease_id is not None:
                by_lease.setdefault(offer.lease_id, []).append((job, offer))
    counted: list[tuple[QuoteJob, OfferClaim]] = []
    for lease_id in sorted(by_lease):  # one lock order for every writer: no deadlock
        uses = [(j, o) for j, o in by_lease[lease_id] if not j.rejected]
        if not uses:
            continue
        if _lease_update(session, lease_id, sum(o.reserve_minor for _, o in uses), len(uses)):
            counted += uses
            continue
        for job, offer in uses:  # the batch does not fit: quote by quote
            if job.rejected:
                continue
            if _lease_update(session, lease_id, offer.reserve_minor, 1):
                counted.append((job, offer))
            else:
                job.rejected.add(offer.key)
                _undo_claims(session, job.offers)
    for job, offer in counted:  # a quote rejected on one lease gives back what it used
        if job.rejected and offer.lease_id is not None:
            _lease_update(session, offer.lease_id, -offer.reserve_minor, -1)


def _promotion_totals(session: Session, jobs: list[QuoteJob], now: datetime) -> None:
    totals: dict[str, list[int]] = {}
    for job in jobs:
        for offer in job.offers:
            t = totals.setdefault(offer.key, [0, 0, 0])
            t[0] += offer.reserve_minor
            t[1] += 1
        for key, n in job.eligible.items():
            totals.setdefault(key, [0, 0, 0])[2] += n
    if not totals:
        return
    # On the driver: one short UPDATE per promotion, where SQLAlchemy's statement
    # processing cost the writer more than the update.
    raw = RawSQL.of(session)
    stamp = raw.timestamp(now)
    mark = "%s" if raw.postgres else "?"
    cursor = session.connection().connection.cursor()
    try:
        cursor.executemany(
            _RAW_TOTALS.replace("?", mark),
            [(held, offers, eligible, eligible, stamp, key)
             for key, (held, offers, eligible) in sorted(totals.items())],
        )  # fmt: skip
    finally:
        cursor.close()
