"""Ingestion service: per-device credentials (hashed secrets), managed by `kidjamo devices`."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0005_ingestion.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
