"""Step cache: one row per cache key, pointing at the fitted step and its output objects.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("cls", sa.String(300), nullable=False),
        sa.Column("fitted_object", sa.String(64), nullable=False),
        sa.Column("output_object", sa.String(64), nullable=True),
        sa.Column("fitted_fingerprint", sa.String(100), nullable=False),
        sa.Column("output_fingerprint", sa.String(100), nullable=True),
        sa.Column("output_shape", sa.String(100), nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("last_used_at", sa.String(40), nullable=False),
        sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_cache_last_used", "cache_entries", ["last_used_at"])


def downgrade() -> None:
    op.drop_index("ix_cache_last_used", "cache_entries")
    op.drop_table("cache_entries")
