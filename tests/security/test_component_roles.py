"""Every component connects with its own login and holds: the pipeline runs a minute end to end with
its rights only, and each login is refused what it does not need; the embedded server asks for
passwords; compose gives no component the owner's URL and publishes nothing beyond loopback."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import yaml

from kidjamo.cli.airflow_env import PROJECT_ROOT
from kidjamo.settings import Settings
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from tests.security.support import login_url, logins
from transforms.alerts.delivery import deliver_notifications
from transforms.alerts.escalation import escalate
from transforms.clinical.rules import default_rules
from transforms.views import refresh_views
from transforms.pipeline import process_interval
from transforms.registry import import_registry

Denied = psycopg.errors.InsufficientPrivilege
LOGINS = {"sec_comp_pipeline": "kidjamo_pipeline", "sec_comp_ingest": "kidjamo_ingest", "sec_comp_analyst": "kidjamo_analyst"}
MINUTE = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def component_url(postgres_server):
    from tests.databases import migrated_database

    with migrated_database(postgres_server, "t_security_components") as url, logins(url, LOGINS):
        yield url


def test_the_pipeline_runs_a_minute_end_to_end_as_its_own_login(component_url, tmp_path):
    pipeline = login_url(component_url, "sec_comp_pipeline")
    registry = tmp_path / "registry.csv"
    registry.write_text("patient_id,birth_date,sex,genotype,device_id,care_team,baseline_spo2\n"
                        "comp-p1,2015-03-02,F,HbSS,comp-d1,team-a,96\ncomp-p2,1990-07-14,M,HbSC,comp-d2,team-b,\n")
    import_registry(registry, pipeline, pseudonym_key="k" * 40)
    lake = Lake(f"file://{tmp_path / 'lake'}")
    readings = [{"device_id": device, "patient_id": patient, "timestamp": (MINUTE - timedelta(seconds=20)).isoformat(),
                 "vitals": {"spo2": spo2, "heart_rate": 90, "temperature": 37.0}}
                for device, patient, spo2 in [("comp-d1", "comp-p1", 80.0), ("comp-d2", "comp-p2", 97.0)]]
    lake.write_bytes(f"landing/vitals/{minute_partition(MINUTE)}/batch.json", json.dumps(readings).encode())
    settings = Settings(home=tmp_path, notify_channels="log", pseudonym_key="k" * 40)
    counts = process_interval(MINUTE, MINUTE + timedelta(minutes=1), lake=lake, database_url=pipeline, run_id="as-pipeline",
                              settings=settings)
    assert counts["load"]["measurements"]["inserted"] == 2
    assert counts["alerts"]["opened"] >= 1
    deliver_notifications(pipeline, now=MINUTE + timedelta(minutes=1), settings=settings)  # the run delivered them already
    with psycopg.connect(component_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.notifications WHERE status = 'sent'").fetchone()[0] >= 1
    escalate(pipeline, as_of=MINUTE + timedelta(minutes=20), rules=default_rules(), settings=settings)
    assert "vitals_hourly" in refresh_views(pipeline, heavy=True, pseudonym_key="k" * 40)["views"]
    with psycopg.connect(login_url(component_url, "sec_comp_analyst")) as connection:
        assert connection.execute("SELECT count(*) FROM analytics.patients_critical").fetchone()[0] == 1


#: What each component login is refused: everything its job does not need.
REFUSED = {
    "sec_comp_pipeline": [
        "SELECT * FROM kidjamo.device_credentials",
        "SELECT * FROM kidjamo.audit_log",
        "SELECT * FROM kidjamo.care_team_members",
        "SELECT * FROM kidjamo.audit_event_roles",
        "SELECT kidjamo.erase_identifiers_from_audit('x', 'y')",
        "SELECT kidjamo.record_audit_event('patient_erasure', '{}')",
        "CREATE ROLE sneaky LOGIN",
        "CREATE TABLE kidjamo.sneaky (x int)",
        "ALTER TABLE kidjamo.patients DISABLE ROW LEVEL SECURITY",
        "SET ROLE postgres",
        "SET ROLE kidjamo_ingest",
    ],
    "sec_comp_ingest": [
        "SELECT * FROM kidjamo.measurements",
        "SELECT * FROM kidjamo.patients",  # only the columns the fast path needs
        "SELECT * FROM kidjamo.audit_log",
        "SELECT * FROM kidjamo.quarantine",
        "SELECT * FROM analytics.vitals_hourly",
        "DELETE FROM kidjamo.alerts",
        "UPDATE kidjamo.device_credentials SET revoked_at = NULL",
        "SET ROLE kidjamo_pipeline",
    ],
}


@pytest.mark.parametrize(("login", "statement"), [(login, statement) for login, statements in REFUSED.items()
                                                  for statement in statements])
def test_a_component_login_is_refused_what_it_does_not_need(component_url, login, statement):
    with psycopg.connect(login_url(component_url, login)) as connection, pytest.raises(Denied):
        connection.execute(statement)


@pytest.mark.slow
def test_a_new_embedded_server_asks_for_passwords_and_gives_each_component_a_login(monkeypatch):
    import shutil
    import tempfile
    from pathlib import Path

    from kidjamo.warehouse import database, migrations

    # Not under pytest's folder: as root the server runs as a system user that must reach its data.
    home = Path(tempfile.mkdtemp(prefix="kidjamo-security-embedded-"))
    monkeypatch.setenv("KIDJAMO_HOME", str(home))
    settings = Settings(home=home)
    server = database.embedded_server(settings)
    try:
        owner_url = server.start()
        migrations.migrate(owner_url)
        created = database.ensure_component_logins(settings)
        assert sorted(created) == ["kidjamo_authenticator", "kidjamo_svc_analyst", "kidjamo_svc_ingest", "kidjamo_svc_pipeline"]
        assert stat.S_IMODE(server.passwords_file.stat().st_mode) == 0o600
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.configured_port()}/kidjamo")
        hba = (server.data_dir / "pg_hba.conf").read_text()
        assert not [line for line in hba.splitlines() if line.strip() and not line.startswith("#") and line.split()[-1] == "trust"]
        with psycopg.connect(database.component_url("pipeline", settings)) as connection:
            assert connection.execute("SELECT current_user").fetchone()[0] == "kidjamo_svc_pipeline"
            with pytest.raises(Denied):
                connection.execute("SELECT * FROM kidjamo.device_credentials")
        with psycopg.connect(database.component_url("ingest", settings)) as connection:
            assert connection.execute("SELECT count(*) FROM kidjamo.device_credentials").fetchone()[0] == 0
        assert database.ensure_component_logins(settings) == []  # idempotent
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_compose_gives_no_component_the_owners_url_and_binds_ports_to_loopback():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.airflow.yml").read_text())
    owner = compose["services"]["warehouse"]["environment"]["POSTGRES_USER"]
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        for variable, value in environment.items():
            if isinstance(value, str) and "@warehouse:" in value and name != "airflow-init":
                assert not value.startswith(f"postgresql://{owner}:"), f"{name}.{variable} uses the owner's URL"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "kidjamo_svc_ingest" in compose["services"]["ingestion"]["environment"]["KIDJAMO_DATABASE_URL"]
    assert "kidjamo_svc_pipeline" in compose["x-airflow-common"]["environment"]["AIRFLOW_CONN_KIDJAMO_POSTGRES"]
