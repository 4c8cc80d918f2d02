"""Logs are one JSON object per line, with the pipeline's context, and never carry patient data.

A fleet posts a minute to the real ingestion service (a hypoxic patient: fast path and alerts), then
``kidjamo pipeline run`` processes that minute with notifications on the log channel; both run at
DEBUG level. Every line of both logs is searched for every patient id and device secret of the fleet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from ingestion.simulator.fleet import Fleet, provision_fleet, read_secrets
from kidjamo.lake.storage import Lake
from tests.databases import migrated_database
from tests.ingestion.conftest import KIDJAMO, ServiceProcess, _post

pytestmark = pytest.mark.slow

STEPS = {"to_raw", "to_bronze", "gate_bronze", "to_silver", "gate_silver", "to_gold", "load", "alerts", "refresh_views"}
VITAL_VALUE = re.compile(r'"(spo2|heart_rate|temperature|respiratory_rate|hydration_pct|pain_scale)"\s*:\s*-?[0-9]')


@pytest.fixture(scope="module")
def logged_minute(postgres_server, tmp_path_factory):
    """(fleet, secrets, service log lines, pipeline log lines) of one minute processed at DEBUG level."""
    home = tmp_path_factory.mktemp("log-privacy")
    lake = Lake(f"file://{home / 'lake'}")
    fleet = Fleet.generate(6, seed=5)
    with migrated_database(postgres_server, "log_privacy") as url:
        provision_fleet(url, fleet, home / "secrets.json", pseudonym_key="test-key")
        secrets = read_secrets(home / "secrets.json")
        service = ServiceProcess(home, lake, url, {}, log_level="debug").start()
        now = datetime.now(timezone.utc).replace(microsecond=0)
        try:
            for reading in fleet.readings(now - timedelta(seconds=60), now, hypoxia_patient=True):
                response = _post(service, reading["device_id"], secrets[reading["device_id"]], reading)
                assert response.status_code == 202, response.text
        finally:
            service.stop()
        minutes = sorted({_minute(f.path) for f in lake.list_files("landing/vitals")})
        environment = {name: value for name, value in os.environ.items() if not name.startswith("KIDJAMO_")}
        environment.update(KIDJAMO_HOME=str(home), KIDJAMO_DATABASE_URL=url, KIDJAMO_LAKE_URL=lake.root_url,
                           KIDJAMO_LOG_LEVEL="DEBUG", KIDJAMO_NOTIFY_CHANNELS="log", KIDJAMO_NOTIFY_MIN_SEVERITY="info")
        pipeline = subprocess.run(
            [KIDJAMO, "pipeline", "run", "--start", minutes[0].isoformat(),
             "--end", (minutes[-1] + timedelta(minutes=1)).isoformat(), "--run-id", "log-privacy"],
            env=environment, capture_output=True, text=True, timeout=300)
        assert pipeline.returncode == 0, pipeline.stderr[-3000:]
        service_lines = (home / "service.log").read_text().splitlines()
        yield fleet, secrets, service_lines, pipeline.stderr.splitlines(), url


def _minute(path: str) -> datetime:
    day, hour, minute = (piece.split("=", 1)[1] for piece in path.split("/")[2:5])
    return datetime.fromisoformat(f"{day}T{hour}:{minute}:00+00:00")


def test_every_line_is_a_json_object_with_time_level_and_component(logged_minute):
    _, _, service_lines, pipeline_lines, _ = logged_minute
    for component, lines in (("ingestion", service_lines), ("pipeline", pipeline_lines)):
        assert lines, f"the {component} wrote no log"
        for line in lines:
            record = json.loads(line)
            assert {"time", "level", "component", "event"} <= set(record), line
            assert record["component"] == component, line
            datetime.fromisoformat(record["time"].replace("Z", "+00:00"))


def test_every_pipeline_step_logs_its_run_minute_counts_and_duration(logged_minute):
    _, _, _, pipeline_lines, _ = logged_minute
    finished = [json.loads(line) for line in pipeline_lines if '"step finished"' in line]
    assert {record["step"] for record in finished} == STEPS
    for record in finished:
        assert record["run_id"] == "log-privacy"
        assert record["arrival_minute"].endswith("+00:00")
        assert isinstance(record["counts"], dict) and record["duration_s"] >= 0


def test_no_patient_identifier_device_secret_or_vital_value_is_logged(logged_minute):
    fleet, secrets, service_lines, pipeline_lines, url = logged_minute
    text = "\n".join(service_lines + pipeline_lines)
    assert "kidjamo notification" in text  # the log channel did write the alerts' notifications
    leaked_patients = [patient for patient in fleet.patient_ids if patient in text]
    leaked_secrets = [device for device, secret in secrets.items() if secret in text]
    assert leaked_patients == [] and leaked_secrets == []
    assert VITAL_VALUE.search(text) is None
