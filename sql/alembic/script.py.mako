"""${message}"""

from kidjamo.warehouse.migrations import run_sql_file

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("${up_revision}_CHANGE_ME.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only: restore from backup or write a new revision")
