"""Roles: each grant and each denial; row-level security by care team; the append-only audit log."""

from datetime import datetime, timezone

import psycopg
import pytest

from transforms.load import load_measurements
from transforms.views import refresh_views
from transforms.registry import import_registry
from tests.security.support import clinicians
from warehouse.support import REGISTRY_LINES, as_role, insert_alert, silver_batch, write_registry

T0 = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)
Denied = psycopg.errors.InsufficientPrivilege


def load_fixture_data(url: str) -> str:
    """Registry, one reading per device, one alert per patient, refreshed analytics."""
    batch = silver_batch([("device-001", "patient-001", T0), ("device-002", "patient-002", T0),
                          ("device-003", "patient-002", T0), ("device-004", "patient-003", T0)])
    load_measurements(url, batch, "run-1")
    for patient in ("patient-001", "patient-002", "patient-003"):
        insert_alert(url, patient, first_reading_at=T0, last_reading_at=T0)
    refresh_views(url, heavy=True, pseudonym_key="k")
    return url


@pytest.fixture
def loaded_url(registered_url):
    """A database of its own, for a test that changes data (clinician login wh_loaded_a of team-a)."""
    with clinicians(registered_url, {"wh_loaded_a": ["team-a"]}):
        yield load_fixture_data(registered_url)


@pytest.fixture(scope="module")
def shared_url(postgres_server, tmp_path_factory):
    """One database for the tests that only read or are denied (a denied statement changes nothing)."""
    from tests.databases import migrated_database

    with migrated_database(postgres_server, "t_warehouse_security") as url:
        import_registry(write_registry(tmp_path_factory.mktemp("registry") / "registry.csv", REGISTRY_LINES), url,
                        pseudonym_key="k")
        with clinicians(url, {"wh_team_a": ["team-a"], "wh_team_b": ["team-b"], "wh_team_z": ["team-z"]}):
            yield load_fixture_data(url)


# --- analyst ------------------------------------------------------------------------------------
@pytest.mark.parametrize("relation", ["vitals_hourly", "patient_daily", "device_health", "data_quality_daily",
                                      "active_alerts", "patients_critical"])
def test_analyst_reads_every_analytics_view(shared_url, relation):
    with as_role(shared_url, "kidjamo_analyst") as connection:
        connection.execute(f"SELECT * FROM analytics.{relation}").fetchall()


@pytest.mark.parametrize("table", ["patients", "devices", "measurements", "alerts", "quarantine", "audit_log", "pseudonyms",
                                   "vitals_hourly_rollup", "measurements_20261127"])
def test_analyst_reads_nothing_in_schema_kidjamo(shared_url, table):
    with as_role(shared_url, "kidjamo_analyst") as connection, pytest.raises(Denied):
        connection.execute(f"SELECT 1 FROM kidjamo.{table} LIMIT 1")


def test_analyst_cannot_refresh_or_write_analytics(shared_url):
    with as_role(shared_url, "kidjamo_analyst") as connection:
        with pytest.raises(Denied):
            connection.execute("REFRESH MATERIALIZED VIEW analytics.data_quality_daily")
    with as_role(shared_url, "kidjamo_analyst") as connection:
        with pytest.raises(Denied):
            connection.execute("SELECT kidjamo.refresh_analytics_view('data_quality_daily')")


def test_analyst_sees_the_alert_counts_of_every_team(shared_url):
    with as_role(shared_url, "kidjamo_analyst") as connection:
        assert connection.execute("SELECT count(*) FROM analytics.active_alerts").fetchone()[0] == 3


# --- clinician ----------------------------------------------------------------------------------
@pytest.mark.parametrize("team, patients", [("team-a", ["patient-001"]), ("team-b", ["patient-002"]), ("team-z", [])])
def test_clinician_sees_only_the_patients_of_their_care_team(shared_url, team, patients):
    with as_role(shared_url, "wh_" + team.replace("-", "_")) as connection:
        for table in ("patients", "devices", "measurements", "alerts"):
            seen = [row[0] for row in connection.execute(f"SELECT DISTINCT patient_id FROM kidjamo.{table} ORDER BY 1")]
            assert seen == patients, table


def test_the_clinician_group_role_without_a_mapping_sees_nothing(shared_url):
    with as_role(shared_url, "kidjamo_clinician") as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM kidjamo.patients").fetchone()[0] == 0


def test_clinician_cannot_read_a_partition_directly(shared_url):
    with as_role(shared_url, "wh_team_a") as connection, pytest.raises(Denied):
        connection.execute("SELECT count(*) FROM kidjamo.measurements_20261127")


@pytest.mark.parametrize("table", ["quarantine", "audit_log", "pipeline_runs", "pseudonyms", "device_credentials", "vitals_hourly_rollup"])
def test_clinician_cannot_read_operational_tables(shared_url, table):
    with as_role(shared_url, "wh_team_a") as connection, pytest.raises(Denied):
        connection.execute(f"SELECT 1 FROM kidjamo.{table} LIMIT 1")


def test_clinician_cannot_read_analytics(shared_url):
    with as_role(shared_url, "wh_team_a") as connection, pytest.raises(Denied):
        connection.execute("SELECT 1 FROM analytics.vitals_hourly")


def test_clinician_acknowledges_an_alert_of_their_team_only(loaded_url):
    with as_role(loaded_url, "wh_loaded_a") as connection:
        updated = connection.execute("UPDATE kidjamo.alerts SET status = 'acknowledged', updated_at = now()").rowcount
        connection.commit()
    assert updated == 1
    with psycopg.connect(loaded_url) as connection:
        statuses = dict(connection.execute("SELECT patient_id, status FROM kidjamo.alerts").fetchall())
    assert statuses == {"patient-001": "acknowledged", "patient-002": "open", "patient-003": "open"}


def test_clinician_cannot_change_an_alert_severity(shared_url):
    with as_role(shared_url, "wh_team_a") as connection, pytest.raises(Denied):
        connection.execute("UPDATE kidjamo.alerts SET severity = 'info'")


#: Writes a clinician is refused: the registry (their own team included), the readings, the partitions.
CLINICIAN_WRITES = [
    "INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype, care_team) VALUES ('p9', '2000-01-01', 'F', 'HbSS', 'team-a')",
    "UPDATE kidjamo.patients SET care_team = 'team-b'",
    "DELETE FROM kidjamo.measurements",
    "SELECT kidjamo.ensure_measurement_partitions('2030-01-01', '2030-01-02')",
]


@pytest.mark.parametrize("statement", CLINICIAN_WRITES)
def test_clinician_cannot_write(shared_url, statement):
    with as_role(shared_url, "wh_team_a") as connection, pytest.raises(Denied):
        connection.execute(statement)


# --- pipeline -----------------------------------------------------------------------------------
def test_pipeline_writes_the_operational_tables(loaded_url):
    with as_role(loaded_url, "kidjamo_pipeline") as connection:
        connection.execute("INSERT INTO kidjamo.pipeline_runs (run_id, step, interval_start, interval_end, status)"
                           " VALUES ('r', 'load', %s, %s, 'success')", (T0, datetime(2026, 11, 27, 15, 1, tzinfo=timezone.utc)))
        connection.execute("UPDATE kidjamo.patients SET baseline_spo2 = 95 WHERE patient_id = 'patient-001'")
        assert connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0] == 4
        assert connection.execute("SELECT kidjamo.ensure_measurement_partitions('2030-01-01', '2030-01-02')").fetchone()[0] == 2


@pytest.mark.parametrize("statement", [
    "SELECT * FROM kidjamo.audit_log",
    "INSERT INTO kidjamo.audit_log (acting_role, action) VALUES ('x', 'forged')",
    "UPDATE kidjamo.audit_log SET action = 'x'",
    "DELETE FROM kidjamo.audit_log",
    "TRUNCATE kidjamo.audit_log",
    "SELECT kidjamo.redact_patient_audit('patient-001')",
    "DROP TABLE kidjamo.measurements_20261127",
    "ALTER TABLE kidjamo.measurements DISABLE ROW LEVEL SECURITY",
    "TRUNCATE kidjamo.measurements",
])
def test_pipeline_cannot_rewrite_the_audit_log_or_the_schema(shared_url, statement):
    with as_role(shared_url, "kidjamo_pipeline") as connection, pytest.raises((Denied, psycopg.errors.WrongObjectType)):
        connection.execute(statement)


# --- audit --------------------------------------------------------------------------------------
def test_audit_records_who_when_before_and_after(loaded_url):
    with as_role(loaded_url, "kidjamo_pipeline", **{"kidjamo.actor": "nurse.jane"}) as connection:
        connection.execute("UPDATE kidjamo.patients SET baseline_spo2 = 93 WHERE patient_id = 'patient-001'")
    with psycopg.connect(loaded_url) as connection:
        row = connection.execute(
            "SELECT login_role, acting_role, actor, on_behalf_of, before ->> 'baseline_spo2', after ->> 'baseline_spo2', occurred_at IS NOT NULL"
            " FROM kidjamo.audit_log WHERE action = 'UPDATE' AND table_name = 'kidjamo.patients'").fetchone()
    assert row == ("postgres", "kidjamo_pipeline", "postgres", "nurse.jane", "96", "93", True)


def test_audit_records_alert_changes_and_pipeline_runs(loaded_url):
    with psycopg.connect(loaded_url) as connection:
        connection.execute("UPDATE kidjamo.alerts SET status = 'resolved' WHERE patient_id = 'patient-003'")
        connection.execute("INSERT INTO kidjamo.pipeline_runs (run_id, step, interval_start, interval_end, status)"
                           " VALUES ('r', 'load', %s, %s, 'running')", (T0, datetime(2026, 11, 27, 15, 1, tzinfo=timezone.utc)))
        connection.execute("UPDATE kidjamo.pipeline_runs SET status = 'success' WHERE run_id = 'r'")
        rows = connection.execute("SELECT table_name, action, row_key FROM kidjamo.audit_log"
                                  " WHERE table_name IN ('kidjamo.alerts', 'kidjamo.pipeline_runs') AND action <> 'INSERT' OR"
                                  " table_name = 'kidjamo.pipeline_runs' ORDER BY audit_id").fetchall()
    assert ("kidjamo.alerts", "UPDATE") in [(t, a) for t, a, _ in rows]
    assert [(a, k) for t, a, k in rows if t == "kidjamo.pipeline_runs"] == [("INSERT", {"run_id": "r", "step": "load"}), ("UPDATE", {"run_id": "r", "step": "load"})]


@pytest.mark.parametrize("statement", ["UPDATE kidjamo.audit_log SET actor = 'someone else'", "DELETE FROM kidjamo.audit_log",
                                       "TRUNCATE kidjamo.audit_log"])
def test_audit_log_is_append_only_even_for_its_owner(shared_url, statement):
    with psycopg.connect(shared_url) as connection, pytest.raises(Denied, match="append-only"):
        connection.execute(statement)


def test_a_clinician_acknowledgement_is_audited_under_their_role(loaded_url):
    with as_role(loaded_url, "wh_loaded_a", **{"kidjamo.actor": "dr.house"}) as connection:
        connection.execute("UPDATE kidjamo.alerts SET status = 'acknowledged', acknowledged_by = 'dr.house', acknowledged_at = now()")
    with psycopg.connect(loaded_url) as connection:
        row = connection.execute("SELECT acting_role, on_behalf_of, before ->> 'status', after ->> 'status' FROM kidjamo.audit_log"
                                 " WHERE table_name = 'kidjamo.alerts' AND action = 'UPDATE'").fetchone()
    assert row == ("wh_loaded_a", "dr.house", "open", "acknowledged")
