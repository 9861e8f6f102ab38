"""experiments, exposures, decision assignments, holdout flag

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 21:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("layer", sa.String(length=64), nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("variants", JSON, nullable=False),
        sa.Column("guardrail_metrics", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("stopped_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_experiments_status", "experiments", ["status"], unique=False)
    op.create_table(
        "experiment_exposures",
        sa.Column("experiment_key", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["experiment_key"], ["experiments.key"]),
        sa.PrimaryKeyConstraint("experiment_key", "unit_id"),
    )
    op.create_index(
        "ix_exposures_experiment_variant", "experiment_exposures", ["experiment_key", "variant"]
    )
    op.create_table(
        "decision_assignments",
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("experiment_key", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"]),
        sa.ForeignKeyConstraint(["experiment_key"], ["experiments.key"]),
        sa.PrimaryKeyConstraint("decision_id", "experiment_key"),
    )
    op.create_index(
        "ix_assignments_experiment_variant", "decision_assignments", ["experiment_key", "variant"]
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("learn", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("learn")
    op.drop_index("ix_assignments_experiment_variant", table_name="decision_assignments")
    op.drop_table("decision_assignments")
    op.drop_index("ix_exposures_experiment_variant", table_name="experiment_exposures")
    op.drop_table("experiment_exposures")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_table("experiments")
