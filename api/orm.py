"""Database tables as SQLAlchemy 2 typed models.

Money columns hold integer minor units next to an explicit currency; timestamps are
stored in UTC and always come back timezone-aware, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey",
    "AppliedDecision",
    "AuditEntry",
    "Base",
    "CategoryFit",
    "ContextSchemaVersion",
    "Decision",
    "DecisionAssignment",
    "Experiment",
    "ExperimentExposure",
    "ModelPrior",
    "ModelSnapshot",
    "Outcome",
    "PriceHistory",
    "Product",
    "Promotion",
    "PromotionCustomerUsage",
    "PromotionLease",
    "PromotionUsage",
    "PromotionVersion",
    "Segment",
    "SkuDailyPrices",
    "UTCDateTime",
    "time_ordered_id",
    "time_ordered_ids",
    "utcnow",
]


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class _Entropy:
    """Bytes from ``os.urandom``, drawn 64 KiB at a time and handed out in order.

    ``os.urandom`` is a system call that releases the GIL; on a worker's event loop each
    release lets a busy thread take the GIL, and the loop then waits up to the switch
    interval to get it back (py-spy: 22 % of the loop's samples at 900 quotes/s went to
    the ids' ``os.urandom``). Drawn in bulk, one call serves about 6,500 ids. The bytes
    are the same CSPRNG's; each is handed out once (under a lock), and a forked child
    starts with an empty buffer, so no two processes share the same bytes.
    """

    CHUNK = 65536

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0
        self._pid = os.getpid()

    def take(self, n: int) -> bytes:
        """``n`` bytes never handed out before."""
        with self._lock:
            if self._pid != os.getpid():  # a forked copy of the parent's buffer
                self._buffer, self._at, self._pid = b"", 0, os.getpid()
            if self._at + n > len(self._buffer):
                self._buffer, self._at = os.urandom(max(self.CHUNK, n)), 0
            out = self._buffer[self._at : self._at + n]
            self._at += n
            return out


_ENTROPY = _Entropy()


def time_ordered_ids(n: int) -> list[uuid.UUID]:
    """``n`` new row ids, UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74
    random bits.

    Ids made at about the same time sort together, so a batch of new rows lands on the last
    pages of a primary-key (or foreign-key) index instead of on a random page each: with
    random (version 4) ids every 1,000-row group commit rewrote about a thousand pages of
    each index. The random part stays unguessable (74 bits from ``os.urandom``, drawn in
    bulk: :class:`_Entropy`); the prefix tells when the row was made, which its own
    timestamp column tells anyway.

    Parameters
    ----------
    n : int
        How many.

    Returns
    -------
    list of uuid.UUID, length n
    """
    millis = time.time_ns() // 1_000_000
    stamp = (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76
    randomness = _ENTROPY.take(10 * n)
    out = []
    for i in range(0, 10 * n, 10):
        r = int.from_bytes(randomness[i : i + 10])  # 80 bits: 12 (rand_a), 6 unused, 62 (rand_b)
        value = stamp | (r >> 68 & 0xFFF) << 64 | 0b10 << 62 | (r & 0x3FFF_FFFF_FFFF_FFFF)
        out.append(uuid.UUID(int=value))
    return out


def time_ordered_id() -> uuid.UUID:
    """One new row id (:func:`time_ordered_ids`)."""
    return time_ordered_ids(1)[0]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned timezone-aware.

    Naive datetimes are refused on the way in: the engine never guesses a time zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class Product(Base):
    """A sellable SKU with its list price and unit cost (minor units of ``currency``)."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), index=True)
    list_price_minor: Mapped[int] = mapped_column(BigInteger)
    unit_cost_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("list_price_minor > 0", name="list_price_positive"),
        CheckConstraint("unit_cost_minor >= 0", name="unit_cost_non_negative"),
    )


class Segment(Base):
    """A customer segment: the unit over which demand is modelled."""

    __tablename__ = "segments"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Decision(Base):
    """One priced quote line, logged with the exact propensity of the price it got."""

    __tablename__ = "decisions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    quote_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column()
    customer_id: Mapped[str] = mapped_column(String(128))
    segment: Mapped[str] = mapped_column(ForeignKey("segments.key"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    list_price_minor: Mapped[int] = mapped_column(BigInteger)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    unit_cost_minor: Mapped[int] = mapped_column(BigInteger)
    promotion: Mapped[str | None] = mapped_column(String(64), default=None)
    propensity: Mapped[float] = mapped_column(Float)
    personalized: Mapped[bool] = mapped_column(Boolean)
    policy: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    experiment_variant: Mapped[str | None] = mapped_column(String(64), default=None)
    jurisdiction: Mapped[str | None] = mapped_column(String(16), default=None)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    guardrail_trail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Declared context features' values as canonical text (cells group by it).
    context_key: Mapped[str] = mapped_column(String(1024), default="")
    channel: Mapped[str | None] = mapped_column(String(32), default=None)
    #: Promotion discount per unit (minor units); effective price = price - discount.
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Promotion cost to the merchant for the line beyond the discount (free shipping).
    promotion_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Budget held for this offer until its outcome arrives or its outcome window closes.
    promotion_reserved_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    promotion_version: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Outcome window: an outcome recorded after this is late (stored, not learned from).
    outcome_deadline: Mapped[datetime | None] = mapped_column(default=None)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)
    redeemed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The offer's hold still counts in its promotion's running totals (until its outcome
    #: settles it or its outcome window closes).
    hold_open: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Per-customer limit period the offer counts in (``campaign`` or ``YYYY-MM-DD``).
    promotion_period: Mapped[str | None] = mapped_column(String(16), default=None)
    #: Lease the offer's budget came from.
    lease_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    #: False for holdout traffic: logged and reported, never learned from.
    learn: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The API key that asked for the quote (its explanations are that key's to read).
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)

    __table_args__ = (
        Index("ix_decisions_sku_time", "sku", "created_at"),
        # Sticky quotes and per-customer limits: one customer's recent decisions.
        Index("ix_decisions_customer_sku_expiry", "customer_id", "sku", "expires_at"),
        # The sweeper's expired holds.
        Index("ix_decisions_hold_open", "hold_open", "outcome_deadline"),
        Index("ix_decisions_outcome_deadline", "outcome_deadline"),
        CheckConstraint(
            "discount_minor >= 0 AND discount_minor <= price_minor", name="discount_in_price"
        ),
        CheckConstraint("propensity > 0 AND propensity <= 1", name="propensity_in_unit"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("price_minor >= 0", name="price_non_negative"),
    )


class Outcome(Base):
    """What happened to a decision: at most one per decision (``decision_id`` is unique)."""

    __tablename__ = "outcomes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("decisions.id"), unique=True)
    converted: Mapped[bool] = mapped_column(Boolean)
    quantity: Mapped[int] = mapped_column(Integer)
    revenue_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    #: Promotion money given on this outcome (discount, or shipping borne), minor units.
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Recorded after the decision's outcome window: stored, but not learned from.
    late: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        CheckConstraint("quantity >= 0", name="outcome_quantity_non_negative"),
        CheckConstraint("discount_minor >= 0", name="outcome_discount_non_negative"),
        CheckConstraint("revenue_minor >= 0", name="revenue_non_negative"),
    )


class PriceHistory(Base):
    """Every list-price change and, later, every served price per period."""

    __tablename__ = "price_history"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    effective_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_price_history_sku_time", "sku", "effective_at"),)


class ApiKey(Base):
    """An API key: only its digest is stored (``hash_scheme``: ``sha256``, or
    ``hmac-sha256`` keyed with ``PRICING_KEY_PEPPER``); the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash_scheme: Mapped[str] = mapped_column(String(16), default="sha256", server_default="sha256")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """A change made by a merchandiser or admin: who, when, what, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


class ModelSnapshot(Base):
    """One fit of the demand model: published (serving candidates) or rejected by the gate.

    The newest published snapshot serves. Its draws never change; its importance weights
    do, as outcomes arrive (``weights_seq`` counts the updates so workers notice them).
    """

    __tablename__ = "model_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    method: Mapped[str] = mapped_column(String(16))
    approximate: Mapped[bool] = mapped_column(Boolean, default=False)
    config_hash: Mapped[str] = mapped_column(String(32))
    model_config_json: Mapped[dict[str, Any]] = mapped_column("model_config", JSONType)
    sampler_config_json: Mapped[dict[str, Any]] = mapped_column("sampler_config", JSONType)
    data_watermark: Mapped[datetime] = mapped_column()
    n_cells: Mapped[int] = mapped_column(Integer)
    n_trials: Mapped[int] = mapped_column(BigInteger)
    n_conversions: Mapped[int] = mapped_column(BigInteger)
    diagnostics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    message: Mapped[str] = mapped_column(Text, default="")
    draws: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    log_weights: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    #: Per (segment, category) block, float64 (n_pairs, D); None until an online update
    #: weighs blocks (pricing.posterior.DemandPosterior.block_log_weights).
    block_log_weights: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    weights_seq: Mapped[int] = mapped_column(Integer, default=0)
    ess: Mapped[float | None] = mapped_column(Float, default=None)
    applied_outcomes: Mapped[int] = mapped_column(BigInteger, default=0)
    weights_updated_at: Mapped[datetime | None] = mapped_column(default=None)


class CategoryFit(Base):
    """One category's part of a fanned-out refit (``run_id``), waiting to be gathered.

    Written by the category's job; the publish job turns the run's rows into one snapshot
    and deletes them in the same transaction (so a run is published at most once).
    """

    __tablename__ = "category_fits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    category: Mapped[str] = mapped_column(String(64))
    expected: Mapped[int] = mapped_column(Integer)
    base_snapshot_id: Mapped[int] = mapped_column(ForeignKey("model_snapshots.id"))
    data_watermark: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType)
    draws: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("run_id", "category", name="uq_category_fits_run_category"),)


class AppliedDecision(Base):
    """Decisions whose label (outcome, or the default when the window closed without one)
    is already folded into a snapshot's weights; written with the weights. A decision is
    learned from at most once per snapshot."""

    __tablename__ = "applied_decisions"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("model_snapshots.id"))
    decision_id: Mapped[uuid.UUID] = mapped_column(Uuid)

    __table_args__ = (PrimaryKeyConstraint("snapshot_id", "decision_id"),)


class ModelPrior(Base):
    """Priors learned elsewhere (e.g. from sales history), merged into the model config."""

    __tablename__ = "model_priors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(200))
    model_config_json: Mapped[dict[str, Any]] = mapped_column("model_config", JSONType)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType)


class GuardrailVersion(Base):
    """One version of the merchandisers' guardrails; the newest effective one applies."""

    __tablename__ = "guardrail_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    effective_from: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    kill_switch: Mapped[bool] = mapped_column(Boolean, default=False)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    note: Mapped[str] = mapped_column(Text, default="")


class Promotion(Base):
    """A promotion as merchandisers define it (the current version; history in
    :class:`PromotionVersion`). Money fields are minor units of ``currency``."""

    __tablename__ = "promotions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromotionVersion(Base):
    """Every version of every promotion, as stored (append-only)."""

    __tablename__ = "promotion_versions"

    key: Mapped[str] = mapped_column(ForeignKey("promotions.key"))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (PrimaryKeyConstraint("key", "version"),)


class PromotionUsage(Base):
    """Running totals of a promotion: settled spend and redemptions, open holds, what is
    allocated to leases, and eligible traffic (for pacing).

    ``allocated_minor`` = spent + open holds + unused parts of open leases, and likewise
    ``allocated_offers`` for the redemption cap; a lease is granted only while it fits
    under the budget / cap (one conditional ``UPDATE``), so offers never exceed them.
    """

    __tablename__ = "promotion_usage"

    key: Mapped[str] = mapped_column(ForeignKey("promotions.key"), primary_key=True)
    spent_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    redemptions: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_offers: Mapped[int] = mapped_column(BigInteger, default=0)
    eligible_visits: Mapped[int] = mapped_column(BigInteger, default=0)
    first_eligible_at: Mapped[datetime | None] = mapped_column(default=None)
    held_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    open_offers: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_offers: Mapped[int] = mapped_column(BigInteger, default=0)


class PromotionLease(Base):
    """A slice of a capped promotion's budget and redemptions taken by one worker.

    The worker spends it from memory; each offer it commits adds to ``used_*`` in the
    same transaction (only while the lease is open and the offer fits). Closing the lease
    (returned by its worker, or expired and reclaimed by anyone) gives the unused part
    back to the promotion's free budget.
    """

    __tablename__ = "promotion_leases"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key: Mapped[str] = mapped_column(ForeignKey("promotions.key"), index=True)
    worker: Mapped[str] = mapped_column(String(64))
    budget_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    offers: Mapped[int | None] = mapped_column(BigInteger, default=None)
    used_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    used_offers: Mapped[int] = mapped_column(BigInteger, default=0)
    granted_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_promotion_leases_open", "closed_at", "expires_at"),)


class PromotionCustomerUsage(Base):
    """Offers counted against a customer's per-period limit (open or redeemed)."""

    __tablename__ = "promotion_customer_usage"

    key: Mapped[str] = mapped_column(ForeignKey("promotions.key"))
    customer_id: Mapped[str] = mapped_column(String(128))
    period: Mapped[str] = mapped_column(String(16))
    used: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (PrimaryKeyConstraint("key", "customer_id", "period"),)


class SkuDailyPrices(Base):
    """Running price aggregates per SKU and UTC day, maintained with the decisions.

    What guardrails (the daily anchor) and the EU prior-price rule read: the quote path
    never scans the decision log.
    """

    __tablename__ = "sku_daily_prices"

    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    day: Mapped[date] = mapped_column(Date)
    first_at: Mapped[datetime] = mapped_column()
    last_at: Mapped[datetime] = mapped_column()
    last_price_minor: Mapped[int] = mapped_column(BigInteger)
    low_minor: Mapped[int] = mapped_column(BigInteger)
    high_minor: Mapped[int] = mapped_column(BigInteger)
    low_final_minor: Mapped[int] = mapped_column(BigInteger)
    decisions: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        PrimaryKeyConstraint("sku", "day"),
        Index("ix_sku_daily_prices_day_updated", "day", "updated_at"),
    )


class QuoteIdempotency(Base):
    """The response of a quote made with an ``Idempotency-Key`` header, for its retries.

    Written by the group writer in the transaction that logs the quote's decisions, so a
    retry either finds the committed quote or makes it. Keys are scoped to the API key
    that sent them and may be reused once ``expires_at`` has passed.
    """

    __tablename__ = "quote_idempotency"

    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    quote_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        PrimaryKeyConstraint("scope", "key"),
        Index("ix_quote_idempotency_expires", "expires_at"),
    )


class CustomerErasure(Base):
    """A customer erased by an admin: the workers drop what they hold in memory for them.

    Holds only the SHA-256 of the erased identifier (workers match it against the
    customers they hold), never the identifier itself, and only for a day: long enough
    for every worker to see it (they re-read within a second), short enough to keep
    nothing that identifies. The rows of the customer carry a random pseudonym instead.
    """

    __tablename__ = "customer_erasures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_hash: Mapped[str] = mapped_column(String(64))
    erased_at: Mapped[datetime] = mapped_column(index=True)


class JurisdictionVersion(Base):
    """A version of the jurisdiction rules (what each law requires); the newest is active.

    ``rules`` is a list of ``{code, personalization, disclosure, prior_price_rule}``;
    ``default_code`` prices quotes that name no jurisdiction. Without any version the
    engine uses :data:`pricing.jurisdictions.DEFAULT_RULES`.
    """

    __tablename__ = "jurisdiction_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    default_code: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class ContextSchemaVersion(Base):
    """Declared context features (:mod:`pricing.context`); the newest version applies."""

    __tablename__ = "context_schemas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    schema: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Experiment(Base):
    """A controlled experiment: variants are policies, units are customers."""

    __tablename__ = "experiments"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    layer: Mapped[str | None] = mapped_column(String(64), default=None)
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    guardrail_metrics: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class ExperimentExposure(Base):
    """A unit's first exposure to an experiment, with its (deterministic) variant."""

    __tablename__ = "experiment_exposures"

    experiment_key: Mapped[str] = mapped_column(ForeignKey("experiments.key"))
    unit_id: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        PrimaryKeyConstraint("experiment_key", "unit_id"),
        Index("ix_exposures_experiment_variant", "experiment_key", "variant"),
    )


class DecisionAssignment(Base):
    """Which variant of which running experiment a decision was made under."""

    __tablename__ = "decision_assignments"

    decision_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("decisions.id"))
    experiment_key: Mapped[str] = mapped_column(ForeignKey("experiments.key"))
    variant: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        PrimaryKeyConstraint("decision_id", "experiment_key"),
        Index("ix_assignments_experiment_variant", "experiment_key", "variant"),
    )
