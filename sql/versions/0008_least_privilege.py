"""Least privilege: care teams from a role mapping, the ingest role, device verifiers, audited retention."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0008_least_privilege.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
