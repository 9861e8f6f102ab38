"""running totals for the quote path: daily price aggregates, promotion leases and holds

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:30:00

The quote path stops reading the decision log: per-SKU daily price aggregates, open holds
and per-customer promotion counts become running totals, and capped promotions hand
slices of their budget to workers as leases. Existing data is folded into the new
totals here (decisions of the last 31 days, open offers, redeemed offers).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def upgrade() -> None:
    op.create_table(
        "sku_daily_prices",
        sa.Column("sku", sa.String(64), sa.ForeignKey("products.sku"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("low_minor", sa.BigInteger(), nullable=False),
        sa.Column("high_minor", sa.BigInteger(), nullable=False),
        sa.Column("low_final_minor", sa.BigInteger(), nullable=False),
        sa.Column("decisions", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", "day"),
    )
    op.create_index("ix_sku_daily_prices_day_updated", "sku_daily_prices", ["day", "updated_at"])
    op.create_table(
        "promotion_leases",
        sa.Column("id", sa.Uuid(), nullable=False, primary_key=True),
        sa.Column("key", sa.String(64), sa.ForeignKey("promotions.key"), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("budget_minor", sa.BigInteger(), nullable=True),
        sa.Column("offers", sa.BigInteger(), nullable=True),
        sa.Column("used_minor", sa.BigInteger(), nullable=False),
        sa.Column("used_offers", sa.BigInteger(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_promotion_leases_key", "promotion_leases", ["key"])
    op.create_index("ix_promotion_leases_open", "promotion_leases", ["closed_at", "expires_at"])
    op.create_table(
        "promotion_customer_usage",
        sa.Column("key", sa.String(64), sa.ForeignKey("promotions.key"), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "customer_id", "period"),
    )
    with op.batch_alter_table("promotion_usage", schema=None) as batch_op:
        for name in ("held_minor", "open_offers", "allocated_minor", "allocated_offers"):
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("hold_open", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("promotion_period", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("lease_id", sa.Uuid(), nullable=True))
        batch_op.drop_index("ix_decisions_sku_time_price")
        batch_op.drop_index("ix_decisions_promotion_open")
        batch_op.drop_index("ix_decisions_customer_id")
        batch_op.drop_index("ix_decisions_sku")
        batch_op.create_index("ix_decisions_sku_time", ["sku", "created_at"])
        batch_op.create_index("ix_decisions_hold_open", ["hold_open", "outcome_deadline"])
    _fold_existing_data()


def _fold_existing_data() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    meta = sa.MetaData()
    decisions = sa.Table("decisions", meta, autoload_with=bind)
    usage = sa.Table("promotion_usage", meta, autoload_with=bind)
    promotions = sa.Table("promotions", meta, autoload_with=bind)
    customer = sa.Table("promotion_customer_usage", meta, autoload_with=bind)
    daily = sa.Table("sku_daily_prices", meta, autoload_with=bind)
    now_bind = now if bind.dialect.name != "sqlite" else now.replace(tzinfo=None)
    # Open offers keep their holds.
    bind.execute(
        decisions.update()
        .where(decisions.c.promotion.is_not(None), decisions.c.settled.is_(False),
               decisions.c.outcome_deadline > now_bind)
        .values(hold_open=True)
    )  # fmt: skip
    periods = {
        key: (definition or {}).get("per_customer_period", "campaign")
        for key, definition in bind.execute(sa.select(promotions.c.key, promotions.c.definition))
    }
    totals: dict[str, list[int]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    rows = bind.execute(
        sa.select(decisions.c.id, decisions.c.promotion, decisions.c.promotion_reserved_minor,
                  decisions.c.customer_id, decisions.c.created_at, decisions.c.hold_open,
                  decisions.c.redeemed)
        .where(decisions.c.promotion.is_not(None),
               decisions.c.hold_open.is_(True) | decisions.c.redeemed.is_(True))
    )  # fmt: skip
    for _id, key, reserved, customer_id, created_at, hold_open, _redeemed in rows:
        created = _aware(created_at)
        assert created is not None
        period = created.date().isoformat() if periods.get(key) == "day" else "campaign"
        counts[(key, customer_id, period)] = counts.get((key, customer_id, period), 0) + 1
        if hold_open:
            total = totals.setdefault(key, [0, 0])
            total[0] += int(reserved or 0)
            total[1] += 1
        bind.execute(decisions.update().where(decisions.c.id == _id).values(promotion_period=period))
    for key, (held, open_offers) in totals.items():
        bind.execute(
            usage.update().where(usage.c.key == key).values(held_minor=held, open_offers=open_offers)
        )
    bind.execute(
        usage.update().values(
            allocated_minor=usage.c.spent_minor + usage.c.held_minor,
            allocated_offers=usage.c.redemptions + usage.c.open_offers,
        )
    )
    if counts:
        bind.execute(
            customer.insert(),
            [{"key": k, "customer_id": c, "period": p, "used": n} for (k, c, p), n in counts.items()],
        )
    since = now - timedelta(days=31)
    since_bind = since if bind.dialect.name != "sqlite" else since.replace(tzinfo=None)
    days: dict[tuple[str, object], dict[str, object]] = {}
    for sku, created_at, price, discount in bind.execute(
        sa.select(decisions.c.sku, decisions.c.created_at, decisions.c.price_minor,
                  decisions.c.discount_minor)
        .where(decisions.c.created_at >= since_bind)
        .order_by(decisions.c.created_at)
    ):  # fmt: skip
        at = _aware(created_at)
        assert at is not None
        stored = at if bind.dialect.name != "sqlite" else at.replace(tzinfo=None)
        row = days.get((sku, at.date()))
        final = int(price) - int(discount or 0)
        if row is None:
            days[(sku, at.date())] = {
                "sku": sku, "day": at.date(), "first_at": stored, "last_at": stored,
                "last_price_minor": int(price), "low_minor": int(price), "high_minor": int(price),
                "low_final_minor": final, "decisions": 1, "updated_at": now_bind,
            }  # fmt: skip
            continue
        row["last_at"], row["last_price_minor"] = stored, int(price)
        row["low_minor"] = min(int(row["low_minor"]), int(price))  # type: ignore[call-overload]
        row["high_minor"] = max(int(row["high_minor"]), int(price))  # type: ignore[call-overload]
        row["low_final_minor"] = min(int(row["low_final_minor"]), final)  # type: ignore[call-overload]
        row["decisions"] = int(row["decisions"]) + 1  # type: ignore[call-overload]
    if days:
        bind.execute(daily.insert(), list(days.values()))


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_hold_open")
        batch_op.drop_index("ix_decisions_sku_time")
        batch_op.create_index("ix_decisions_sku", ["sku"])
        batch_op.create_index("ix_decisions_customer_id", ["customer_id"])
        batch_op.create_index(
            "ix_decisions_promotion_open", ["promotion", "settled", "outcome_deadline"]
        )
        batch_op.create_index("ix_decisions_sku_time_price", ["sku", "created_at", "price_minor"])
        batch_op.drop_column("lease_id")
        batch_op.drop_column("promotion_period")
        batch_op.drop_column("hold_open")
    with op.batch_alter_table("promotion_usage", schema=None) as batch_op:
        for name in ("allocated_offers", "allocated_minor", "open_offers", "held_minor"):
            batch_op.drop_column(name)
    op.drop_table("promotion_customer_usage")
    op.drop_index("ix_promotion_leases_open", table_name="promotion_leases")
    op.drop_index("ix_promotion_leases_key", table_name="promotion_leases")
    op.drop_table("promotion_leases")
    op.drop_index("ix_sku_daily_prices_day_updated", table_name="sku_daily_prices")
    op.drop_table("sku_daily_prices")
