"""who asked for a decision (its explanations), and customer erasure

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:30:00

``decisions.key_id`` names the API key that asked for the quote, so a checkout key may read
the explanations of its own customers' decisions. ``customer_erasures`` tells the workers
which customers were erased (by hash, for a day) so they drop them from memory.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.Uuid(), nullable=True))
    op.create_table(
        "customer_erasures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customer_erasures_erased_at", "customer_erasures", ["erased_at"])


def downgrade() -> None:
    op.drop_index("ix_customer_erasures_erased_at", table_name="customer_erasures")
    op.drop_table("customer_erasures")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("key_id")
