"""guardrail versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 17:02:32.746045
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# JSON documents: JSONB on PostgreSQL, JSON text elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "guardrail_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("kill_switch", sa.Boolean(), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("guardrail_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_guardrail_versions_effective_from"), ["effective_from"], unique=False
        )

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_decisions_customer_sku_expiry", ["customer_id", "sku", "expires_at"], unique=False
        )
        batch_op.create_index("ix_decisions_sku_time", ["sku", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_sku_time")
        batch_op.drop_index("ix_decisions_customer_sku_expiry")

    with op.batch_alter_table("guardrail_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guardrail_versions_effective_from"))

    op.drop_table("guardrail_versions")
