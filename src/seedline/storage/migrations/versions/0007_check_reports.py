"""Stored ``seedline check`` reports, and every run's parameters indexed for the UI's filters.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "check_reports",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("spec_name", sa.String(200), nullable=False),
        sa.Column("spec_fingerprint", sa.String(100), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("report_object", sa.String(64), nullable=False),
        sa.Column("nondeterministic", sa.Boolean, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_index("ix_check_reports_spec", "check_reports", ["spec_name", "created_at"])
    op.create_table(
        "run_params",
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("value", sa.Text, nullable=True),
        sa.Column("number", sa.Float, nullable=True),
    )
    op.create_index("ix_run_params_name_value", "run_params", ["name", "value"])
    op.create_index("ix_run_params_name_number", "run_params", ["name", "number"])
    op.create_index("ix_metrics_name_value", "metrics", ["name", "value"])


def downgrade() -> None:
    op.drop_index("ix_metrics_name_value", "metrics")
    op.drop_table("run_params")
    op.drop_index("ix_check_reports_spec", "check_reports")
    op.drop_table("check_reports")
