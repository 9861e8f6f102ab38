"""idempotency keys of quotes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:00:00

``POST /v1/quotes`` takes an ``Idempotency-Key`` header: the quote's response is stored
with its decisions, and a retry with the same key gets the same quote back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quote_idempotency",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("quote_id", sa.Uuid(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_index("ix_quote_idempotency_expires", "quote_idempotency", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_quote_idempotency_expires", table_name="quote_idempotency")
    op.drop_table("quote_idempotency")
