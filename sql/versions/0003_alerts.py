"""Alerts raised by the clinical rules (docs/clinical-rules.md); one open alert per patient and rule."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_alerts.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
