"""promotions, context schema, delayed rewards

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 20:39:32.044139
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "context_schemas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("schema", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "promotions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "promotion_usage",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False),
        sa.Column("redemptions", sa.BigInteger(), nullable=False),
        sa.Column("settled_offers", sa.BigInteger(), nullable=False),
        sa.Column("eligible_visits", sa.BigInteger(), nullable=False),
        sa.Column("first_eligible_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["key"], ["promotions.key"]),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "promotion_versions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["key"], ["promotions.key"]),
        sa.PrimaryKeyConstraint("key", "version"),
    )
    # Applied learning is now tracked per decision (an outcome, or the default label when
    # the outcome window closed): each decision is learned from at most once per snapshot.
    op.create_table(
        "applied_decisions",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["model_snapshots.id"]),
        sa.PrimaryKeyConstraint("snapshot_id", "decision_id"),
    )
    op.execute(
        "INSERT INTO applied_decisions (snapshot_id, decision_id) "
        "SELECT a.snapshot_id, o.decision_id FROM applied_outcomes a "
        "JOIN outcomes o ON o.id = a.outcome_id"
    )
    op.drop_table("applied_outcomes")
    false = sa.false()
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("context_key", sa.String(length=1024), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("channel", sa.String(length=32), nullable=True))
        for name in ("discount_minor", "promotion_cost_minor", "promotion_reserved_minor"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            )
        batch_op.add_column(sa.Column("promotion_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("outcome_deadline", TIMESTAMP, nullable=True))
        batch_op.add_column(
            sa.Column("settled", sa.Boolean(), nullable=False, server_default=false)
        )
        batch_op.add_column(
            sa.Column("redeemed", sa.Boolean(), nullable=False, server_default=false)
        )
        batch_op.create_index("ix_decisions_outcome_deadline", ["outcome_deadline"], unique=False)
        batch_op.create_index(
            "ix_decisions_promotion_open",
            ["promotion", "settled", "outcome_deadline"],
            unique=False,
        )
        batch_op.create_check_constraint(
            "discount_in_price", "discount_minor >= 0 AND discount_minor <= price_minor"
        )
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("discount_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=false))
        batch_op.create_check_constraint("outcome_discount_non_negative", "discount_minor >= 0")


def downgrade() -> None:
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_constraint("outcome_discount_non_negative", type_="check")
        batch_op.drop_column("late")
        batch_op.drop_column("discount_minor")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_constraint("discount_in_price", type_="check")
        batch_op.drop_index("ix_decisions_promotion_open")
        batch_op.drop_index("ix_decisions_outcome_deadline")
        for name in ("redeemed", "settled", "outcome_deadline", "promotion_version",
                     "promotion_reserved_minor", "promotion_cost_minor", "discount_minor",
                     "channel", "context_key"):  # fmt: skip
            batch_op.drop_column(name)
    op.create_table(
        "applied_outcomes",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("outcome_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["model_snapshots.id"]),
        sa.PrimaryKeyConstraint("snapshot_id", "outcome_id"),
    )
    op.execute(
        "INSERT INTO applied_outcomes (snapshot_id, outcome_id) "
        "SELECT a.snapshot_id, o.id FROM applied_decisions a "
        "JOIN outcomes o ON o.decision_id = a.decision_id"
    )
    op.drop_table("applied_decisions")
    op.drop_table("promotion_versions")
    op.drop_table("promotion_usage")
    op.drop_table("promotions")
    op.drop_table("context_schemas")
