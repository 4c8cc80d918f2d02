"""Shards: concurrent loads of one minute create a new day's measurement partition once."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0016_shards.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
