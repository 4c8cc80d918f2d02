"""Care-team app: hospital identities (OpenID Connect subjects) of clinicians, logins in flight, session method."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0017_care_oidc.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
