"""Model registry: named models with integer versions, movable aliases, and the parity-check log.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("model_object", sa.String(64), nullable=False),
        sa.Column("manifest_object", sa.String(64), nullable=False),
        sa.Column("probe_object", sa.String(64), nullable=True),
        sa.Column("probe_input_object", sa.String(64), nullable=True),
        sa.Column("input_schema", sa.Text, nullable=False),
        sa.Column("model_fingerprint", sa.String(100), nullable=True),
        sa.Column("predictions_fingerprint", sa.String(100), nullable=True),
    )
    op.create_index("ix_model_versions_run", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "parity_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("overridden", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_parity_checks_run", "parity_checks", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_parity_checks_run", "parity_checks")
    op.drop_table("parity_checks")
    op.drop_table("model_aliases")
    op.drop_index("ix_model_versions_run", "model_versions")
    op.drop_table("model_versions")
