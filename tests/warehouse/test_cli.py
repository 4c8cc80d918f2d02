"""``kidjamo patients`` and ``kidjamo db`` warehouse commands, end to end through the CLI."""

import json

import psycopg
from click.testing import CliRunner

from kidjamo.cli import main
from warehouse.support import REGISTRY_LINES, write_registry


def run(args: list[str], url: str, lake_root: str):
    env = {"KIDJAMO_DATABASE_URL": url, "KIDJAMO_LAKE_URL": f"file://{lake_root}", "KIDJAMO_PSEUDONYM_KEY": "cli-key"}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_patients_import_export_and_erase(fresh_database_url, tmp_path):
    registry = write_registry(tmp_path / "registry.csv", REGISTRY_LINES)
    result = run(["patients", "import", str(registry)], fresh_database_url, str(tmp_path / "lake"))
    assert result.exit_code == 0 and json.loads(result.output)["patients_inserted"] == 3

    result = run(["patients", "export", "patient-001", "--output", str(tmp_path / "export")], fresh_database_url, str(tmp_path / "lake"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "export" / "manifest.json").read_text())["devices"] == ["device-001"]

    result = run(["patients", "erase", "patient-001", "--yes"], fresh_database_url, str(tmp_path / "lake"))
    assert result.exit_code == 0, result.output
    with psycopg.connect(fresh_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.patients WHERE patient_id = 'patient-001'").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM kidjamo.audit_log WHERE action = 'patient_erasure' AND actor IS NOT NULL").fetchone()[0] == 1


def test_patients_import_reports_invalid_lines_and_fails(fresh_database_url, tmp_path):
    registry = write_registry(tmp_path / "registry.csv", ["patient-009,2012-02-01,W,HbSS,device-009,team-a,"])
    result = CliRunner().invoke(main, ["patients", "import", str(registry)], env={"KIDJAMO_DATABASE_URL": fresh_database_url})
    assert result.exit_code == 1
    assert "line 2, column sex: expected one of F, M, X, got 'W'" in result.output


def test_db_retention_and_partitions_commands(fresh_database_url, tmp_path):
    with psycopg.connect(fresh_database_url) as connection:
        connection.execute("SELECT kidjamo.ensure_measurement_partitions('2026-01-01', '2026-01-03')")
    result = run(["db", "retention", "--keep-days", "30", "--as-of", "2026-02-03"], fresh_database_url, str(tmp_path / "lake"))
    assert result.exit_code == 0
    assert result.output.split() == ["kidjamo.measurements_20260101", "kidjamo.measurements_20260102", "kidjamo.measurements_20260103"]
    result = run(["db", "refresh", "--heavy"], fresh_database_url, str(tmp_path / "lake"))
    assert result.exit_code == 0 and "analytics.vitals_hourly" in result.output
