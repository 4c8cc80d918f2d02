"""No reading lost: device incidents (a device flooding a batch with bad readings)."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0009_noloss.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
