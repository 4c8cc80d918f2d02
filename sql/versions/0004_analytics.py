"""Analyst views. Patient keys are pseudonymized; no direct identifiers leave schema kidjamo."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0004_analytics.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
