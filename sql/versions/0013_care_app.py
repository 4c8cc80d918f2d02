"""Care-team web app: web credentials, sessions, login attempts, clinicians' views and alert actions."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0013_care_app.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
