"""FHIR read access: care-system bearer tokens (hashed) and their care teams, managed by `kidjamo fhir clients`."""

from kidjamo.warehouse.migrations import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0012_fhir.sql")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations: write a new revision instead")
