"""Initial schema: runs and their metrics.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("spec_name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40), nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("spec_fingerprint", sa.String(100), nullable=False),
        sa.Column("data_fingerprint", sa.String(100), nullable=True),
        sa.Column("model_fingerprint", sa.String(100), nullable=True),
        sa.Column("predictions_fingerprint", sa.String(100), nullable=True),
        sa.Column("manifest_object", sa.String(64), nullable=True),
        sa.Column("model_object", sa.String(64), nullable=True),
        sa.Column("parent_run", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_runs_created", "runs", ["created_at"])
    op.create_table(
        "metrics",
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_index("ix_runs_created", "runs")
    op.drop_table("runs")
