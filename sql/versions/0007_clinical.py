"""Clinical safety: normal_reading_at for resolution on a normal reading; the renotified event."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0007_clinical.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
