"""block weights: online updates weigh each (segment, category) block by its own outcomes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_snapshots") as batch:
        batch.add_column(sa.Column("block_log_weights", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_snapshots") as batch:
        batch.drop_column("block_log_weights")
