"""Per-minute cost: device_health live over device_status, one index less, the alert step's per-device state."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0010_performance.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
