"""category fits: the parts of a refit fanned out one job per category

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "category_fits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=False),
        sa.Column("base_snapshot_id", sa.Integer(), sa.ForeignKey("model_snapshots.id"),
                  nullable=False),
        sa.Column("data_watermark", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("meta", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("draws", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("run_id", "category", name="uq_category_fits_run_category"),
    )
    op.create_index("ix_category_fits_run_id", "category_fits", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_category_fits_run_id", "category_fits")
    op.drop_table("category_fits")
