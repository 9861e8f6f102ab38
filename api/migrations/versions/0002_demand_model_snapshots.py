"""demand model snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:36:28.147932
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# JSON documents: JSONB on PostgreSQL, JSON text elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_priors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("model_config", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "model_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("approximate", sa.Boolean(), nullable=False),
        sa.Column("config_hash", sa.String(length=32), nullable=False),
        sa.Column("model_config", JSON, nullable=False),
        sa.Column("sampler_config", JSON, nullable=False),
        sa.Column("data_watermark", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n_cells", sa.Integer(), nullable=False),
        sa.Column("n_trials", sa.BigInteger(), nullable=False),
        sa.Column("n_conversions", sa.BigInteger(), nullable=False),
        sa.Column("diagnostics", JSON, nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("draws", sa.LargeBinary(), nullable=True),
        sa.Column("log_weights", sa.LargeBinary(), nullable=True),
        sa.Column("weights_seq", sa.Integer(), nullable=False),
        sa.Column("ess", sa.Float(), nullable=True),
        sa.Column("applied_outcomes", sa.BigInteger(), nullable=False),
        sa.Column("weights_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_snapshots_status"), ["status"], unique=False)

    op.create_table(
        "applied_outcomes",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("outcome_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["model_snapshots.id"],
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "outcome_id"),
    )


def downgrade() -> None:
    op.drop_table("applied_outcomes")
    with op.batch_alter_table("model_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_snapshots_status"))

    op.drop_table("model_snapshots")
    op.drop_table("model_priors")
