"""Migrations: twice in a row, and on a second database of the same server (roles are cluster-wide)."""

import psycopg
import pytest

from kidjamo.warehouse import migrations


@pytest.fixture
def second_database(postgres_server):
    admin_url = postgres_server.url("postgres")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS t_warehouse_second WITH (FORCE)")
        connection.execute("CREATE DATABASE t_warehouse_second")
    yield postgres_server.url("t_warehouse_second")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS t_warehouse_second WITH (FORCE)")


def test_a_second_database_on_the_same_server_migrates_with_the_existing_roles(fresh_database_url, second_database):
    applied = migrations.migrate(second_database)
    assert applied[0] == "0001" and "0006" in applied
    with psycopg.connect(second_database) as connection:
        roles = {row[0] for row in connection.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'kidjamo_%'")}
    assert {"kidjamo_pipeline", "kidjamo_analyst", "kidjamo_clinician"} <= roles


def test_migrating_twice_applies_nothing_and_keeps_the_data(fresh_database_url):
    with psycopg.connect(fresh_database_url) as connection:
        connection.execute("INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype) VALUES ('p', '2000-01-01', 'F', 'HbSS')")
    assert migrations.migrate(fresh_database_url) == []
    with psycopg.connect(fresh_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.patients").fetchone()[0] == 1


def test_a_failing_revision_leaves_the_database_at_the_previous_one(second_database, monkeypatch):
    migrations.migrate(second_database, "0005")
    from kidjamo.warehouse import migrations as module

    original = module.run_sql_file

    def failing(name):
        original(name)
        raise RuntimeError("simulated crash after the SQL ran")

    monkeypatch.setattr(module, "run_sql_file", failing)
    with pytest.raises(RuntimeError):
        migrations.migrate(second_database)
    monkeypatch.setattr(module, "run_sql_file", original)
    assert migrations.current_revision(second_database) == "0005"
    with psycopg.connect(second_database) as connection:
        assert connection.execute("SELECT to_regclass('kidjamo.audit_log')").fetchone()[0] is None
    assert migrations.migrate(second_database)[-1] == migrations.current_revision(second_database)


@pytest.mark.parametrize("revision", ["0001", "0004", "0006"])
def test_warehouse_revisions_are_in_the_linear_chain(fresh_database_url, revision):
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config(fresh_database_url))
    assert len(script.get_heads()) == 1
    assert revision in [rev.revision for rev in script.walk_revisions()]
