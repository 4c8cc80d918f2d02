"""The schema migrations apply in order, are recorded, and are safe to run twice."""

import psycopg

from kidjamo import migrations


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
