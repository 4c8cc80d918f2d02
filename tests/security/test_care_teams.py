"""Attacks on row-level security: a clinician who forges their care team sees and changes nothing of another team.

Every test logs in as a real clinician login role on the real PostgreSQL (no SET ROLE by a
superuser), the way a clinician's psql or the web app's authenticator would.
"""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from kidjamo.warehouse.roles import add_clinician, clinician_teams
from tests.security.support import clinicians, login_url
from transforms.load import load_measurements
from transforms.registry import import_registry
from tests.warehouse.support import REGISTRY_LINES, insert_alert, silver_batch, write_registry

T0 = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)
Denied = psycopg.errors.InsufficientPrivilege
LOGINS = {"sec_alice": ["team-a"], "sec_bob": ["team-b"], "sec_carol": ["team-a", "team-b"]}


@pytest.fixture(scope="module")
def care_url(postgres_server, tmp_path_factory):
    """Patients of team-a (patient-001), team-b (patient-002) and of no team (patient-003), each with an open alert."""
    from tests.databases import migrated_database

    with migrated_database(postgres_server, "t_security_care_teams") as url:
        import_registry(write_registry(tmp_path_factory.mktemp("registry") / "registry.csv", REGISTRY_LINES), url,
                        pseudonym_key="k")
        load_measurements(url, silver_batch([("device-001", "patient-001", T0), ("device-002", "patient-002", T0),
                                             ("device-004", "patient-003", T0)]), "run-1")
        for patient in ("patient-001", "patient-002", "patient-003"):
            insert_alert(url, patient, first_reading_at=T0, last_reading_at=T0)
        with clinicians(url, LOGINS):
            yield url


def visible_patients(connection: psycopg.Connection) -> dict[str, list[str]]:
    return {table: [row[0] for row in connection.execute(f"SELECT DISTINCT patient_id FROM kidjamo.{table} ORDER BY 1")]
            for table in ("patients", "devices", "measurements", "alerts")}


def alert_statuses(url: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        return dict(connection.execute("SELECT patient_id, status FROM kidjamo.alerts").fetchall())


@pytest.mark.parametrize("login, patients", [("sec_alice", ["patient-001"]), ("sec_bob", ["patient-002"]),
                                             ("sec_carol", ["patient-001", "patient-002"])])
def test_a_clinician_login_sees_the_patients_of_its_mapped_teams(care_url, login, patients):
    with psycopg.connect(login_url(care_url, login)) as connection:
        assert visible_patients(connection) == {table: patients for table in ("patients", "devices", "measurements", "alerts")}


def test_setting_the_care_team_guc_widens_nothing(care_url):
    with psycopg.connect(login_url(care_url, "sec_alice")) as connection:
        connection.execute("SET kidjamo.care_team = 'team-b'")
        assert visible_patients(connection)["patients"] == ["patient-001"]
        connection.execute("SELECT set_config('kidjamo.care_team', 'team-b', false)")
        assert visible_patients(connection)["measurements"] == ["patient-001"]


def test_a_clinician_who_forges_the_guc_cannot_acknowledge_another_teams_alert(care_url):
    with psycopg.connect(login_url(care_url, "sec_alice")) as connection:
        connection.execute("SET kidjamo.care_team = 'team-b'")
        updated = connection.execute("UPDATE kidjamo.alerts SET status = 'acknowledged', acknowledged_by = 'sec_alice'"
                                     " WHERE patient_id = 'patient-002'").rowcount
        connection.commit()
    assert updated == 0
    assert alert_statuses(care_url)["patient-002"] == "open"


def test_a_clinician_cannot_move_an_alert_into_another_team(care_url):
    with psycopg.connect(login_url(care_url, "sec_alice")) as connection, pytest.raises(Denied):
        connection.execute("UPDATE kidjamo.alerts SET patient_id = 'patient-002' WHERE patient_id = 'patient-001'")


@pytest.mark.parametrize("statement", [
    "SELECT * FROM kidjamo.care_team_members",
    "INSERT INTO kidjamo.care_team_members VALUES ('sec_alice', 'team-b')",
    "UPDATE kidjamo.care_team_members SET care_team = 'team-b'",
    "DELETE FROM kidjamo.care_team_members",
])
def test_a_clinician_can_neither_read_nor_change_the_team_mapping(care_url, statement):
    with psycopg.connect(login_url(care_url, "sec_alice")) as connection, pytest.raises(Denied):
        connection.execute(statement)


@pytest.mark.parametrize("target", ["sec_bob", "kidjamo_pipeline", "kidjamo_authenticator", "postgres"])
def test_a_clinician_cannot_set_role_to_anyone_else(care_url, target):
    with psycopg.connect(login_url(care_url, "sec_alice")) as connection, pytest.raises(Denied):
        connection.execute(f'SET ROLE "{target}"')


def test_a_clinician_sets_role_to_the_group_and_sees_nothing(care_url):
    """The group role kidjamo_clinician is mapped to no team: switching to it hides everything."""
    with psycopg.connect(login_url(care_url, "sec_alice")) as connection:
        connection.execute("SET ROLE kidjamo_clinician")
        assert visible_patients(connection)["patients"] == []


def test_the_authenticator_reaches_a_clinician_only_by_set_role(care_url):
    with psycopg.connect(login_url(care_url, "kidjamo_authenticator")) as connection:
        with pytest.raises(Denied):
            connection.execute("SELECT 1 FROM kidjamo.patients")
    with psycopg.connect(login_url(care_url, "kidjamo_authenticator")) as connection:
        connection.execute("SET ROLE sec_bob")
        connection.execute("SET kidjamo.care_team = 'team-a'")
        assert visible_patients(connection)["alerts"] == ["patient-002"]
        connection.execute("SET ROLE kidjamo_clinician")  # reachable through sec_bob, but mapped to no team
        assert visible_patients(connection)["alerts"] == []


@pytest.mark.parametrize("target", ["kidjamo_pipeline", "kidjamo_analyst", "postgres"])
def test_the_authenticator_cannot_become_a_component_role(care_url, target):
    with psycopg.connect(login_url(care_url, "kidjamo_authenticator")) as connection, pytest.raises(Denied):
        connection.execute(f'SET ROLE "{target}"')


@pytest.mark.parametrize("role", ["kidjamo_pipeline", "kidjamo_analyst"])
def test_other_roles_cannot_read_the_team_mapping(care_url, role):
    with psycopg.connect(care_url) as connection, pytest.raises(Denied):
        connection.execute(f"SET ROLE {role}")
        connection.execute("SELECT * FROM kidjamo.care_team_members")


def test_the_analyst_cannot_call_the_team_lookup(care_url):
    with psycopg.connect(care_url) as connection, pytest.raises(Denied):
        connection.execute("SET ROLE kidjamo_analyst")
        connection.execute("SELECT kidjamo.care_teams_of('sec_alice')")


def test_the_old_session_care_team_function_is_gone(care_url):
    with psycopg.connect(care_url) as connection:
        assert connection.execute("SELECT to_regprocedure('kidjamo.session_care_team()')").fetchone()[0] is None


def test_adding_a_clinician_twice_adds_teams_and_is_audited(care_url):
    with clinicians(care_url, {"sec_dave": ["team-a"]}):
        with psycopg.connect(care_url) as connection:
            add_clinician(connection, "sec_dave", ["team-b", "team-a"])
            assert clinician_teams(connection, "sec_dave") == ["team-a", "team-b"]
            events = connection.execute("SELECT detail ->> 'care_teams' FROM kidjamo.audit_log"
                                        " WHERE action = 'clinician_added' AND detail ->> 'login' = 'sec_dave' ORDER BY audit_id").fetchall()
        assert [row[0] for row in events] == ['["team-a"]', '["team-a", "team-b"]']
        with psycopg.connect(login_url(care_url, "sec_dave")) as connection:
            assert visible_patients(connection)["patients"] == ["patient-001", "patient-002"]


@pytest.mark.parametrize("login", ["kidjamo_pipeline", "pg_monitor", "postgres", "Robert'); DROP TABLE x;--", ""])
def test_add_clinician_refuses_reserved_privileged_or_malformed_logins(care_url, login):
    with psycopg.connect(care_url) as connection, pytest.raises(ValueError):
        add_clinician(connection, login, ["team-a"])


def test_a_clinician_password_is_stored_as_a_scram_verifier_and_checked(care_url):
    with clinicians(care_url, {"sec_erin": ["team-b"]}):
        with psycopg.connect(care_url) as connection:
            add_clinician(connection, "sec_erin", ["team-b"], password="correct horse battery staple")
            stored = connection.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'sec_erin'").fetchone()[0]
        assert stored.startswith("SCRAM-SHA-256$4096:") and "horse" not in stored
        with psycopg.connect(login_url(care_url, "sec_erin", "correct horse battery staple")) as connection:
            assert visible_patients(connection)["patients"] == ["patient-002"]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(login_url(care_url, "sec_erin", "wrong horse"))
