"""Active promotions, their running totals, and this worker's leases on capped ones.

Caps without a per-quote lock: for each promotion with a budget or a redemption cap,
the worker holds a **lease**, a slice of what is still free, granted by one conditional
``UPDATE promotion_usage SET allocated = allocated + slice WHERE budget - allocated >=
slice`` (:meth:`PromotionBook.maintain`). Quotes spend the slice from memory
(:meth:`PromotionBook.allowances` / :meth:`spend`); the writer adds each committed offer
to the lease's ``used_*`` only while it fits (api/services/quote_writes.py), so the
database never lets offers exceed a lease, and leases never exceed the budget or cap.

A lease is retired at half its lifetime or when it runs low, and returned (its unused
part given back) once no write that uses it is in flight; a new one is taken at once. A
worker that dies leaves its lease to expire: the sweeper of any worker closes expired
leases and gives their unused part back (:func:`sweep`).

Running totals in ``promotion_usage``: ``allocated_*`` (spent + open holds + unused
lease slices), ``held_minor`` / ``open_offers`` (open holds), spend and redemptions.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.hot.maintenance import MaintenanceJob
from api.orm import Decision, PromotionCustomerUsage, PromotionLease, PromotionUsage, utcnow
from api.orm import Promotion as PromotionRow
from pricing.offers import Allowance
from pricing.pacing import pacing_rate
from pricing.promotions import Promotion

__all__ = [
    "LeaseSpend",
    "PromotionBook",
    "Usage",
    "adjust_customer_usage",
    "close_lease_in",
    "grant_in",
    "period_key",
    "release_holds",
    "sweep",
    "sweep_due",
    "sweep_in",
]

log = logging.getLogger("pricing.promotions")


def period_key(promotion: Promotion, at: datetime) -> str:
    """The per-customer limit period an offer made at ``at`` counts in."""
    return at.date().isoformat() if promotion.per_customer_period == "day" else "campaign"


@dataclass(frozen=True, slots=True)
class Usage:
    """A promotion's running totals as last read (money in minor units)."""

    spent: int = 0
    redemptions: int = 0
    settled_offers: int = 0
    held: int = 0
    open_offers: int = 0
    eligible_visits: int = 0
    first_eligible_at: datetime | None = None
    allocated_minor: int = 0
    allocated_offers: int = 0


@dataclass
class _Lease:
    id: uuid.UUID
    key: str
    budget: int | None
    offers: int | None
    budget_left: int | None
    offers_left: int | None
    retire_at: datetime
    expires_at: datetime
    in_flight: int = 0
    retired: bool = False


@dataclass(frozen=True, slots=True)
class LeaseSpend:
    """What one offer took from a lease (for the writer, and a refund on failure)."""

    key: str
    lease_id: uuid.UUID | None
    reserve_minor: int


@dataclass
class PromotionBook:
    """This worker's promotions state (see the module docstring).

    Parameters
    ----------
    sessions : sessionmaker
        Write sessions: leases are granted and returned in transactions of their own when
        the book has no ``writer``, and returned this way at shutdown.
    read_sessions : sessionmaker
        Read-only sessions.
    writer : GroupWriter, optional
        The worker's group writer: when set, leases are granted and returned inside its
        transactions (:class:`~api.hot.maintenance.MaintenanceJob`), so that nothing
        else in the worker takes SQLite's write lock from it.
    worker : str
        This worker's name in the lease table.
    lease_seconds : float
        Lifetime of a lease; it is retired at half of it.
    slice_fraction : float
        Share of what is free that one lease takes.
    """

    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    worker: str = field(default_factory=lambda: f"w-{uuid.uuid4().hex[:12]}")
    lease_seconds: float = 30.0
    slice_fraction: float = 0.25
    writer: Any = None
    active: list[Promotion] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)
    _leases: dict[str, _Lease] = field(default_factory=dict)
    _retired: list[_Lease] = field(default_factory=list)
    _eligible: dict[str, int] = field(default_factory=dict)
    _demand: set[str] = field(default_factory=set)
    _claims: OrderedDict[tuple[str, str, str], int] = field(default_factory=OrderedDict)
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    _maintain_lock: threading.Lock = field(default_factory=threading.Lock)
    _kicker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="leases")
    )
    _kicked: bool = False
    _signature: object = None

    # ------------------------------------------------------------------ reading
    def refresh(self, now: datetime | None = None) -> None:
        """Re-read active promotions and running totals, then keep the leases topped up."""
        now = now or utcnow()
        with self._refresh_lock:
            with self.read_sessions() as session:
                signature = session.execute(
                    select(func.count(), func.max(PromotionRow.updated_at), func.max(PromotionRow.version))
                ).one()
                if signature != self._signature:
                    rows = session.scalars(select(PromotionRow).where(PromotionRow.active.is_(True)))
                    self.active = [Promotion.from_dict(r.definition) for r in rows]
                    self._signature = signature
                usage = {
                    u.key: Usage(u.spent_minor, u.redemptions, u.settled_offers, u.held_minor,
                                 u.open_offers, u.eligible_visits, u.first_eligible_at,
                                 u.allocated_minor, u.allocated_offers)
                    for u in session.scalars(select(PromotionUsage))
                }  # fmt: skip
            with self._lock:
                self.usage = usage
                self._eligible.clear()
            self.maintain(now)

    def note_eligible(self, counts: dict[str, int]) -> None:
        """Eligible lines this worker saw since the last refresh (pacing traffic)."""
        with self._lock:
            for key, n in counts.items():
                self._eligible[key] = self._eligible.get(key, 0) + n

    def rate(self, promotion: Promotion, now: datetime) -> float | None:
        """The promotion's pacing rate now (None when it is not paced)."""
        if not promotion.paced:
            return None
        assert promotion.budget_minor is not None and promotion.ends_at is not None
        u = self.usage.get(promotion.key) or Usage()
        extra = self._eligible.get(promotion.key, 0)
        first = u.first_eligible_at or (now if extra else None)
        return pacing_rate(
            budget=promotion.budget_minor, spent=u.spent, held=u.held,
            redemptions=u.redemptions, settled_offers=u.settled_offers,
            eligible_visits=u.eligible_visits + extra, first_eligible_at=first,
            ends_at=promotion.ends_at, now=now,
        )  # fmt: skip

    def allowances(
        self, promotions: Sequence[Promotion], customer_used: dict[str, int], now: datetime
    ) -> tuple[dict[str, Allowance], dict[str, uuid.UUID | None]]:
        """What each promotion allows one cart now, and the lease each would spend.

        A capped promotion without a usable lease allows nothing (its lease is on the way).
        """
        out: dict[str, Allowance] = {}
        leases: dict[str, uuid.UUID | None] = {}
        with self._lock:
            for p in promotions:
                needs_lease = p.budget_minor is not None or p.redemption_cap is not None
                lease = self._leases.get(p.key) if needs_lease else None
                if needs_lease and (lease is None or lease.retired or now >= lease.retire_at):
                    self._demand.add(p.key)  # a lease is taken in the background
                    self._kick_locked()
                    out[p.key] = Allowance(free_budget_minor=0, offers_left=0)
                    leases[p.key] = None
                    continue
                customer_left = (
                    None if p.per_customer_limit is None
                    else p.per_customer_limit - customer_used.get(p.key, 0)
                )  # fmt: skip
                out[p.key] = Allowance(
                    free_budget_minor=lease.budget_left if lease is not None else None,
                    offers_left=lease.offers_left if lease is not None else None,
                    customer_left=customer_left,
                    pacing_rate_minor=None,
                )
                leases[p.key] = lease.id if lease is not None else None
        for p in promotions:
            if p.paced:
                out[p.key].pacing_rate_minor = self.rate(p, now)
        return out, leases

    # ------------------------------------------------------------------ customers
    def customer_used(
        self, customer: str, promotions: Sequence[Promotion], now: datetime
    ) -> dict[str, int]:
        """What this worker knows of a customer's uses of per-customer-limited promotions.

        A guide only: the limit itself is enforced by the writer's conditional claim,
        which refuses an offer beyond it (the cart is then priced again without it and
        the customer remembered here as at the limit).
        """
        out: dict[str, int] = {}
        with self._lock:
            for p in promotions:
                if p.per_customer_limit is not None:
                    n = self._claims.get((p.key, customer, period_key(p, now)))
                    if n is not None:
                        out[p.key] = n
        return out

    def note_claim(self, key: str, customer: str, period: str) -> None:
        """A committed offer counted against the customer's limit."""
        self._bump((key, customer, period), 1)

    def note_exhausted(self, key: str, customer: str, period: str) -> None:
        """The writer refused an offer: the customer is at the limit."""
        self._bump((key, customer, period), 10**9)

    def forget_customers(self, hashes: set[str]) -> int:
        """Drop the per-customer counts of erased customers (by id hash); returns how many."""
        from api.security import customer_hash

        with self._lock:
            gone = [slot for slot in self._claims if customer_hash(slot[1]) in hashes]
            for slot in gone:
                del self._claims[slot]
        return len(gone)

    def _bump(self, slot: tuple[str, str, str], n: int) -> None:
        with self._lock:
            self._claims[slot] = min(self._claims.get(slot, 0) + n, 10**9)
            self._claims.move_to_end(slot)
            while len(self._claims) > 200_000:
                self._claims.popitem(last=False)

    # ------------------------------------------------------------------ spending
    def spend(self, key: str, lease_id: uuid.UUID | None, reserve_minor: int) -> LeaseSpend:
        """Take one offer's hold from this worker's lease (before the commit)."""
        with self._lock:
            lease = self._find(key, lease_id)
            if lease is not None:
                if lease.budget_left is not None:
                    lease.budget_left -= reserve_minor
                if lease.offers_left is not None:
                    lease.offers_left -= 1
                lease.in_flight += 1
                if self._low(lease):
                    self._kick_locked()
        return LeaseSpend(key, lease_id, reserve_minor)

    def _kick_locked(self) -> None:
        """Top the leases up now in the background (never in the request); holds ``_lock``."""
        if self._kicked:
            return
        self._kicked = True

        def run() -> None:
            with self._lock:
                self._kicked = False
            try:
                self.maintain()
            except Exception:  # the refresher's next pass tries again
                log.exception("lease top-up failed")

        try:
            self._kicker.submit(run)
        except RuntimeError:  # shutting down
            self._kicked = False

    def settle_spend(self, spend: LeaseSpend, *, committed: bool) -> None:
        """After the write: on failure give the hold back to the lease (memory only)."""
        with self._lock:
            lease = self._find(spend.key, spend.lease_id)
            if lease is None:
                return
            lease.in_flight -= 1
            if not committed:
                if lease.budget_left is not None:
                    lease.budget_left += spend.reserve_minor
                if lease.offers_left is not None:
                    lease.offers_left += 1

    def _find(self, key: str, lease_id: uuid.UUID | None) -> _Lease | None:
        if lease_id is None:
            return None
        lease = self._leases.get(key)
        if lease is not None and lease.id == lease_id:
            return lease
        return next((x for x in self._retired if x.id == lease_id), None)

    # ------------------------------------------------------------------ leases
    def _low(self, lease: _Lease) -> bool:
        low_budget = (
            lease.budget is not None and lease.budget_left is not None
            and lease.budget_left <= lease.budget // 4
        )  # fmt: skip
        low_offers = (
            lease.offers is not None and lease.offers_left is not None
            and lease.offers_left <= lease.offers // 4
        )  # fmt: skip
        return low_budget or low_offers

    def maintain(self, now: datetime | None = None) -> None:
        """Retire aging or low leases, return retired ones, and take the leases in demand.

        A lease is renewed only when it was used or a quote asked for one: an idle
        worker gives its slice back within half a lease lifetime and keeps none.
        """
        with self._maintain_lock:
            self._maintain(now or utcnow())

    def _maintain(self, now: datetime) -> None:
        active = {p.key: p for p in self.active if p.budget_minor is not None or p.redemption_cap is not None}
        with self._lock:
            for key, lease in list(self._leases.items()):
                if key not in active or now >= lease.retire_at or self._low(lease):
                    if (lease.budget_left, lease.offers_left) != (lease.budget, lease.offers):
                        self._demand.add(key)  # it was used: keep a slice at hand
                    lease.retired = True
                    self._retired.append(lease)
                    del self._leases[key]
            closable = [x for x in self._retired if x.in_flight == 0]
            self._retired = [x for x in self._retired if x.in_flight > 0]
            wanted = [p for key, p in active.items() if key not in self._leases
                      and (key in self._demand or key not in self._seen)]  # fmt: skip
            for p in wanted:
                self._seen.add(p.key)
                self._demand.discard(p.key)
        for lease in closable:
            try:
                self._write(close_lease_in, now, lease.id)
            except Exception:  # an unreturned lease expires and is reclaimed by the sweeper
                log.exception("could not return lease %s of %s", lease.id, lease.key)
        for promotion in wanted:
            try:
                granted = self._grant(promotion, now)
            except Exception:
                log.exception("could not lease promotion %s", promotion.key)
                continue
            if granted is not None:
                with self._lock:
                    self._leases[promotion.key] = granted

    def _write(self, task: Any, now: datetime, *args: Any, own: bool = False) -> Any:
        """``task(session, now, *args)`` in the group writer's next transaction, or in a
        transaction of its own without a writer (or with ``own``: at shutdown, once the
        writer has stopped)."""
        if self.writer is not None and not own and not self.writer.on_loop():
            return self.writer.write(MaintenanceJob(task, now, *args), LEASE_WRITE_SECONDS)
        with self.sessions() as session, session.begin():
            return task(session, now, *args)

    def _grant(self, promotion: Promotion, now: datetime) -> _Lease | None:
        granted = self._write(
            grant_in, now, promotion.key, promotion.budget_minor, promotion.redemption_cap,
            promotion.cost_minor, self.slice_fraction, self.lease_seconds, self.worker,
        )  # fmt: skip
        if granted is None:
            return None
        lease_id, take_budget, take_offers = granted
        return _Lease(lease_id, promotion.key, take_budget, take_offers, take_budget, take_offers,
                      now + timedelta(seconds=self.lease_seconds / 2),
                      now + timedelta(seconds=self.lease_seconds))  # fmt: skip

    def release_all(self, now: datetime | None = None) -> None:
        """Return every lease (at shutdown)."""
        now = now or utcnow()
        self._kicker.shutdown(wait=True)
        with self._maintain_lock, self._lock:
            leases = [*self._leases.values(), *self._retired]
            self._leases, self._retired = {}, []
        for lease in leases:
            try:
                self._write(close_lease_in, now, lease.id, own=True)
            except Exception:
                log.exception("could not return lease %s", lease.id)


#: Seconds a lease's grant or return waits for the group writer (the refresher or the
#: lease thread waits, never a request; on a time-out the next pass tries again, and a
#: grant that committed after all expires and is reclaimed by the sweep).
LEASE_WRITE_SECONDS = 10.0


def grant_in(
    session: Session, now: datetime, key: str, budget: int | None, cap: int | None, cost: int,
    slice_fraction: float, lease_seconds: float, worker: str,
) -> tuple[uuid.UUID, int | None, int | None] | None:  # fmt: skip
    """Inside the caller's transaction: take a slice of what is free of promotion ``key``'s
    budget (minor units) and redemption cap with one conditional ``UPDATE``, and record the
    lease.

    Returns
    -------
    tuple or None
        (lease id, budget taken, offers taken), or None when too little is free or another
        worker took it first.
    """
    usage = session.get(PromotionUsage, key)
    if usage is None:
        return None
    take_budget = take_offers = None
    if budget is not None:
        free = budget - usage.allocated_minor
        if free <= cost:
            return None
        take_budget = min(free, max(int(free * slice_fraction), budget // 100, 1))
    if cap is not None:
        free_offers = cap - usage.allocated_offers
        if free_offers <= 0:
            return None
        take_offers = min(free_offers, max(int(free_offers * slice_fraction), 1))
    conditions = [PromotionUsage.key == key]
    values: dict[str, object] = {}
    if take_budget is not None and budget is not None:
        conditions.append(PromotionUsage.allocated_minor + take_budget <= budget)
        values["allocated_minor"] = PromotionUsage.allocated_minor + take_budget
    if take_offers is not None and cap is not None:
        conditions.append(PromotionUsage.allocated_offers + take_offers <= cap)
        values["allocated_offers"] = PromotionUsage.allocated_offers + take_offers
    result: Any = session.execute(
        update(PromotionUsage).where(*conditions).values(**values)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    if result.rowcount != 1:
        return None  # another worker took it first: try again next refresh
    lease_id = uuid.uuid4()
    session.add(PromotionLease(
        id=lease_id, key=key, worker=worker, budget_minor=take_budget, offers=take_offers,
        used_minor=0, used_offers=0, granted_at=now, expires_at=now + timedelta(seconds=lease_seconds),
    ))  # fmt: skip
    session.flush()
    return lease_id, take_budget, take_offers


def close_lease_in(session: Session, now: datetime, lease_id: uuid.UUID) -> int:
    """Inside the caller's transaction: close lease ``lease_id`` and give its unused part
    back; returns 1 if it was open, else 0."""
    return _close(session, [lease_id], now)


def _close(session: Session, lease_ids: Sequence[uuid.UUID], now: datetime) -> int:
    """Close open leases and give their unused part back; returns how many were closed."""
    closed = 0
    for lease_id in lease_ids:
        row = session.execute(
            update(PromotionLease)
            .where(PromotionLease.id == lease_id, PromotionLease.closed_at.is_(None))
            .values(closed_at=now)
            .returning(PromotionLease.key, PromotionLease.budget_minor, PromotionLease.used_minor,
                       PromotionLease.offers, PromotionLease.used_offers)
            .execution_options(synchronize_session=False)
        ).first()  # fmt: skip
        if row is None:
            continue
        key, budget, used, offers, used_offers = row
        session.execute(
            update(PromotionUsage).where(PromotionUsage.key == key).values(
                allocated_minor=PromotionUsage.allocated_minor - ((budget or 0) - used),
                allocated_offers=PromotionUsage.allocated_offers - ((offers or 0) - used_offers),
            ).execution_options(synchronize_session=False)
        )  # fmt: skip
        closed += 1
    return closed


def sweep(sessions: sessionmaker[Session], now: datetime | None = None, *, grace: float = 1.0) -> tuple[int, int]:
    """Close expired leases and expired holds in one transaction (any worker may run it,
    concurrently): :func:`sweep_in` on a session of its own.

    Returns
    -------
    tuple of int
        (leases closed, holds released).
    """
    with sessions() as session, session.begin():
        return sweep_in(session, now or utcnow(), grace)


def sweep_due(session: Session, now: datetime, grace: float = 1.0) -> bool:
    """Whether :func:`sweep_in` has anything to do: an open lease expired more than
    ``grace`` seconds ago, or an open hold past its outcome deadline (two indexed reads,
    no lock: the serving worker asks a read-only session before it queues the sweep on its
    group writer)."""
    lease = session.scalar(
        select(PromotionLease.id).where(
            PromotionLease.closed_at.is_(None),
            PromotionLease.expires_at < now - timedelta(seconds=grace),
        ).limit(1)
    )  # fmt: skip
    if lease is not None:
        return True
    hold = session.scalar(
        select(Decision.id).where(Decision.hold_open.is_(True), Decision.outcome_deadline <= now).limit(1)
    )
    return hold is not None


def sweep_in(session: Session, now: datetime, grace: float = 1.0) -> tuple[int, int]:
    """Inside the caller's transaction: close leases that expired more than ``grace``
    seconds before ``now`` (up to 1,000) and release holds past their outcome deadline (up
    to 5,000), updating the running totals.

    Returns
    -------
    tuple of int
        (leases closed, holds released).
    """
    expired = list(session.scalars(
        select(PromotionLease.id).where(
            PromotionLease.closed_at.is_(None),
            PromotionLease.expires_at < now - timedelta(seconds=grace),
        ).limit(1000)
    ))  # fmt: skip
    leases = _close(session, expired, now)
    rows = session.execute(
        update(Decision)
        .where(Decision.id.in_(
            select(Decision.id).where(Decision.hold_open.is_(True), Decision.outcome_deadline <= now)
            .limit(5000).scalar_subquery()
        ), Decision.hold_open.is_(True))
        .values(hold_open=False)
        .returning(Decision.promotion, Decision.promotion_reserved_minor, Decision.customer_id,
                   Decision.promotion_period)
        .execution_options(synchronize_session=False)
    ).all()  # fmt: skip
    release_holds(session, [(key, reserved, customer, period, None) for key, reserved, customer, period in rows if key])
    return leases, len(rows)


def release_holds(
    session: Session,
    holds: Sequence[tuple[str, int, str, str | None, tuple[bool, int] | None]],
) -> None:
    """Update running totals for holds that just closed.

    ``holds``: (promotion, reserved, customer, period, settlement) where settlement is
    None for an expired offer and (converted, money given) for one settled by its outcome.
    """
    totals: dict[str, list[int]] = {}
    customers: dict[tuple[str, str, str], int] = {}
    for key, reserved, customer, period, settlement in holds:
        t = totals.setdefault(key, [0, 0, 0, 0])  # held, open offers, allocated, allocated offers
        converted, given = settlement if settlement is not None else (False, 0)
        t[0] += reserved
        t[1] += 1
        t[2] += reserved - given  # what was given stays allocated: it is spent
        t[3] += 1 - int(converted)  # a redemption keeps its place under the cap
        if period is not None and not converted:
            customers[(key, customer, period)] = customers.get((key, customer, period), 0) + 1
    for key, (held, n, allocated, offers) in sorted(totals.items()):
        session.execute(
            update(PromotionUsage).where(PromotionUsage.key == key).values(
                held_minor=PromotionUsage.held_minor - held,
                open_offers=PromotionUsage.open_offers - n,
                allocated_minor=PromotionUsage.allocated_minor - allocated,
                allocated_offers=PromotionUsage.allocated_offers - offers,
            ).execution_options(synchronize_session=False)
        )  # fmt: skip
    adjust_customer_usage(session, {slot: -n for slot, n in customers.items()})


_CUSTOMER = PromotionCustomerUsage.__table__.c
_ADJUST_CUSTOMER = (
    update(PromotionCustomerUsage.__table__)  # type: ignore[arg-type]
    .where(_CUSTOMER.key == bindparam("k"), _CUSTOMER.customer_id == bindparam("c"),
           _CUSTOMER.period == bindparam("p"))
    .values(used=_CUSTOMER.used + bindparam("n"))
)  # fmt: skip


def adjust_customer_usage(session: Session, changes: dict[tuple[str, str, str], int]) -> None:
    """Add ``n`` to the per-customer counter of each (promotion, customer, period): one
    multi-row statement, in key order (the same lock order for every writer)."""
    rows = [{"k": k, "c": c, "p": p, "n": n} for (k, c, p), n in sorted(changes.items()) if n]
    if rows:
        session.connection().execute(_ADJUST_CUSTOMER, rows)
