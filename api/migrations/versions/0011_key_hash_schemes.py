"""api keys: the digest's scheme (sha256, or hmac-sha256 with the server's pepper)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("hash_scheme", sa.String(16), nullable=False, server_default="sha256")
        )
        batch.create_index("ix_api_keys_prefix", ["prefix"])


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_prefix")
        batch.drop_column("hash_scheme")
