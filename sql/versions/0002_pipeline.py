"""Pipeline bookkeeping: runs with their per-layer accounting, quarantined records, gate results."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_pipeline.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
