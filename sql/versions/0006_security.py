"""Roles, grants, row-level security by care team, and the append-only audit log."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0006_security.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
