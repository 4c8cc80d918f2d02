"""The schema migrations apply in order, are recorded, and are safe to run twice."""

import psycopg

from kidjamo.warehouse import migrations


def test_migrate_twice_applies_nothing_the_second_time(fresh_database_url):
    assert migrations.migrate(fresh_database_url) == []
    with psycopg.connect(fresh_database_url) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'kidjamo'")}
    assert {"patients", "devices", "measurements", "quarantine", "pipeline_runs", "alerts"} <= tables


def test_current_revision_is_the_head(fresh_database_url):
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrations.alembic_config(fresh_database_url)).get_current_head()
    assert migrations.current_revision(fresh_database_url) == head


def test_suite_runs_on_the_postgresql_it_names(migrated_url):
    """Makefile runs the warehouse suite twice: embedded 18, then Debian's 15 (KIDJAMO_TEST_PG_BIN_DIR)."""
    import os

    expected = "15" if "postgresql/15" in os.environ.get("KIDJAMO_TEST_PG_BIN_DIR", "") else "18"
    with psycopg.connect(migrated_url) as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
    assert version.split(".")[0] == expected
