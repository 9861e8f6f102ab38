"""covering index for today's prices per SKU

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 22:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_sku_time")
        batch_op.create_index("ix_decisions_sku_time_price", ["sku", "created_at", "price_minor"])


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_sku_time_price")
        batch_op.create_index("ix_decisions_sku_time", ["sku", "created_at"])
