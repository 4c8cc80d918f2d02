"""``kidjamo devices`` and ``kidjamo simulate`` as a user runs them."""

from __future__ import annotations

import csv
import json

import psycopg
import pytest
from click.testing import CliRunner

from ingestion.auth import api_key_verifier, signing_key
from kidjamo.cli import main


@pytest.fixture
def cli(ingest_database, tmp_path):
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(main, list(args), env={"KIDJAMO_HOME": str(tmp_path / "home"), "KIDJAMO_DATABASE_URL": ingest_database,
                                                      "KIDJAMO_LAKE_URL": f"file://{tmp_path / 'lake'}",
                                                      # another KIDJAMO_HOME: the database is external, so a real key
                                                      "KIDJAMO_PSEUDONYM_KEY": "ingest-cli-test-pseudonym-key-0123456789"}, catch_exceptions=False)
        return result

    return run


def stored_hash(database_url: str, device_id: str) -> tuple:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT api_key_verifier, signing_key, previous_api_key_verifier, previous_signing_key, revoked_at IS NOT NULL"
            " FROM kidjamo.device_credentials WHERE device_id = %s",
            (device_id,),
        ).fetchone()


def test_devices_register_rotate_revoke_store_only_derived_keys(cli, secrets, fleet, ingest_database):
    device_id = fleet.device_ids[0]
    registered = cli("devices", "register", device_id)
    assert registered.exit_code == 0
    secret = registered.output.strip()
    assert secret.startswith("kdj_") and stored_hash(ingest_database, device_id) == (api_key_verifier(secret), signing_key(secret), None, None, False)

    rotated = cli("devices", "rotate", device_id, "--grace-hours", "1")
    new_secret = rotated.output.strip()
    assert new_secret != secret and stored_hash(ingest_database, device_id) == (
        api_key_verifier(new_secret), signing_key(new_secret), api_key_verifier(secret), signing_key(secret), False)

    assert cli("devices", "revoke", device_id).exit_code == 0
    assert stored_hash(ingest_database, device_id)[4] is True


def test_devices_register_creates_a_device_for_a_registered_patient(cli, secrets, fleet, ingest_database):
    result = cli("devices", "register", "device-spare-1", "--patient", fleet.patient_ids[1])
    assert result.exit_code == 0
    with psycopg.connect(ingest_database) as connection:
        owner = connection.execute("SELECT patient_id FROM kidjamo.devices WHERE device_id = 'device-spare-1'").fetchone()
    assert owner == (fleet.patient_ids[1],)


def test_devices_register_of_an_unknown_device_says_what_to_do(cli, secrets):
    result = cli("devices", "register", "device-nobody")
    assert result.exit_code != 0
    assert "not in kidjamo.devices" in result.output


def test_simulate_to_landing_writes_the_fleet_readings_and_registry(cli, tmp_path):
    result = cli("simulate", "--mode", "landing", "--fast", "--minutes", "2", "--patients", "5", "--step-seconds", "30",
                 "--registry", str(tmp_path / "registry.csv"), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "generated=20" in result.output and "landing_files=4" in result.output
    landing = list((tmp_path / "lake" / "landing" / "vitals").rglob("*.ndjson"))
    readings = [json.loads(line) for path in landing for line in path.read_text().splitlines()]
    assert len(readings) == 20 and len({r["device_id"] for r in readings}) == 5
    with open(tmp_path / "registry.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 5


def test_simulate_over_http_provisions_and_posts_every_reading(cli, start_service, tmp_path):
    service = start_service()
    result = cli("simulate", "--patients", "12", "--seed", "11", "--url", service.url, "--provision", "--fast", "--minutes", "3",
                 "--demo-scenarios", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "provisioned 12 patients" in result.output
    summary = dict(item.split("=") for item in result.output.strip().splitlines()[-1].split())
    assert int(summary["accepted"]) + int(summary["duplicates"]) + int(summary["rejected"]) == int(summary["generated"])
    assert int(summary["spooled"]) == 0 and int(summary["accepted"]) == len(service.landing_readings())
