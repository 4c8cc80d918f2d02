"""Operations: indexes for the metrics exporter and its kidjamo_monitor role."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0011_ops.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
