"""Core tables: the patient registry, devices, and the partitioned measurements."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_core.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
