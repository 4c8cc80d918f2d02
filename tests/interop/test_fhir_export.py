"""A simulated day exported in the FHIR Bulk Data format and every resource checked, read back from the lake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from kidjamo.lake.storage import Lake
from tests.interop.conftest import DAY, HYPOXIA, MALFORMED, NO_RESPIRATORY_RATE_MINUTE
from transforms.fhir import resources as fhir
from transforms.fhir.export import export_bulk, read_export
from transforms.fhir.profile import resource_problems
from kidjamo.lake.schema import GOLD

pytestmark = pytest.mark.slow
KIDJAMO = str(Path(sys.executable).parent / "kidjamo")


def _until() -> datetime:
    # Alerts and notifications carry wall-clock times (updated_at, sent_at): export up to now.
    return datetime.now(timezone.utc) + timedelta(seconds=1)


@pytest.fixture(scope="module")
def minute_export(simulated_day):
    result = export_bulk(simulated_day.lake, simulated_day.database_url, since=DAY, until=_until())
    manifest, resources = read_export(simulated_day.lake, result["export"])
    return result, manifest, resources


def _code(observation: dict) -> str:
    return observation["code"]["coding"][0]["code"]


def _extension(resource: dict, url: str) -> list[dict]:
    return [extension for extension in resource.get("extension", []) if extension["url"] == url]


def test_every_exported_resource_of_the_day_passes_the_r4b_model_and_the_vital_signs_checks(minute_export):
    _, manifest, resources = minute_export
    problems = {f"{t}/{r['id']}": resource_problems(r) for t, items in resources.items() for r in items}
    assert {key: value for key, value in problems.items() if value} == {}
    assert sum(len(items) for items in resources.values()) > 20_000


def test_the_manifest_lists_one_ndjson_file_per_resource_type_with_its_count(minute_export, simulated_day):
    result, manifest, resources = minute_export
    assert manifest["transactionTime"].endswith("Z") and manifest["request"]
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert [output["type"] for output in manifest["output"]] == ["Patient", "Device", "Observation", "Flag", "Communication"]
    for output in manifest["output"]:
        assert output["url"] == simulated_day.lake.uri(f"{result['export']}/{output['type']}.ndjson")
        assert output["count"] == len(resources[output["type"]])
        assert {resource["resourceType"] for resource in resources[output["type"]]} == {output["type"]}
    assert result["export"].startswith("exports/fhir/")


def test_each_patient_minute_of_gold_is_one_observation_per_vital_with_a_one_minute_period(minute_export, simulated_day):
    _, _, resources = minute_export
    lake = simulated_day.lake
    gold = lake.read_parquet([f.path for f in lake.list_files("gold/vitals") if f.path.endswith("/part-0.parquet")], GOLD).to_pandas()
    patient_minutes = gold[["patient_id", "minute"]].drop_duplicates()
    # Every gold patient-minute has one Observation per vital (a value, or absent: not sent, or emptied
    # by a field quarantine); minutes whose every reading was quarantined come on top.
    valued = [o for o in resources["Observation"] if "of this minute quarantined" not in (o.get("note") or [{}])[0].get("text", "")]
    assert len(valued) == len(patient_minutes) * len(fhir.VITAL_SIGNS)
    assert {_code(o) for o in valued} == {"59408-5", "8867-4", "8310-5", "9279-1", "72514-3"}
    for observation in valued[:50]:
        period = observation["effectivePeriod"]
        assert pd.Timestamp(period["end"]) - pd.Timestamp(period["start"]) == pd.Timedelta(minutes=1)
    assert {o["subject"]["reference"] for o in resources["Observation"]} == {
        f"Patient/{p}" for p in simulated_day.patient_ids}


def test_a_minute_without_respiratory_rate_is_exported_as_not_performed(minute_export, simulated_day):
    _, _, resources = minute_export
    quiet = simulated_day.patient_ids[2]
    start = fhir.instant(NO_RESPIRATORY_RATE_MINUTE)
    minute = {_code(o): o for o in resources["Observation"]
              if o["subject"]["reference"] == f"Patient/{quiet}" and o["effectivePeriod"]["start"] == start}
    assert minute["9279-1"]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "valueQuantity" in minute["8867-4"]
    absent = [o for o in resources["Observation"] if o.get("dataAbsentReason", {}).get("coding", [{}])[0].get("code") == "not-performed"]
    assert {o["subject"]["reference"] for o in absent} == {f"Patient/{quiet}"}


def test_the_hypoxia_hour_shows_in_the_minute_spo2_observations(minute_export, simulated_day):
    _, _, resources = minute_export
    hypoxic = simulated_day.patient_ids[0]
    low = [o for o in resources["Observation"] if _code(o) == "59408-5" and "valueQuantity" in o and o["valueQuantity"]["value"] < 85]
    assert {o["subject"]["reference"] for o in low} == {f"Patient/{hypoxic}"}
    assert all(fhir.instant(HYPOXIA[0]) <= o["effectivePeriod"]["start"] < fhir.instant(HYPOXIA[1]) for o in low)
    assert len(low) >= 50


def test_the_alerts_are_flags_and_each_sent_notification_a_communication_about_one(minute_export, simulated_day):
    _, _, resources = minute_export
    with psycopg.connect(simulated_day.database_url) as connection:
        alerts = {row[0]: row[1:] for row in connection.execute("SELECT alert_id, rule_id, status, severity, patient_id FROM kidjamo.alerts")}
        sent = connection.execute("SELECT count(*) FROM kidjamo.notifications WHERE status = 'sent'").fetchone()[0]
    flags = {int(flag["identifier"][0]["value"]): flag for flag in resources["Flag"]}
    assert set(flags) == set(alerts)
    hypoxia = next(a for a, (rule, *_rest) in alerts.items() if rule == "hypoxia_emergency")
    flag = flags[hypoxia]
    assert flag["code"]["coding"][0]["code"] == "hypoxia_emergency"
    assert flag["subject"]["reference"] == f"Patient/{simulated_day.patient_ids[0]}"
    assert flag["status"] == ("inactive" if alerts[hypoxia][1] == "resolved" else "active")
    assert _extension(flag, fhir.SEVERITY_EXTENSION)[0]["valueCoding"]["code"] == "critical"
    assert json.loads(_extension(flag, fhir.EVIDENCE_EXTENSION)[0]["valueString"])["values"]["spo2"] < 85
    assert _extension(flag, fhir.FLAG_DETAIL_EXTENSION)
    assert len(resources["Communication"]) == sent > 0
    flag_ids = {f"Flag/{flag['id']}" for flag in resources["Flag"]}
    assert all(c["about"][0]["reference"] in flag_ids for c in resources["Communication"])


def test_reading_granularity_exports_each_reading_and_each_quarantined_one_as_absent(simulated_day):
    malformed = simulated_day.patient_ids[1]
    result = export_bulk(simulated_day.lake, simulated_day.database_url, since=MALFORMED[0], until=MALFORMED[1] + timedelta(minutes=2),
                         patient_id=malformed, granularity="reading")
    _, resources = read_export(simulated_day.lake, result["export"])
    observations = resources["Observation"]
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{malformed}"}
    assert [p["id"] for p in resources["Patient"]] == [malformed]
    assert all("effectiveDateTime" in o for o in observations)
    errors = [o for o in observations if o.get("dataAbsentReason", {}).get("coding", [{}])[0].get("code") == "error"]
    with psycopg.connect(simulated_day.database_url) as connection:
        quarantined = connection.execute(
            """SELECT count(DISTINCT (q.device_id, q.measured_at)) FROM kidjamo.quarantine AS q
               JOIN kidjamo.devices AS d ON d.device_id = q.device_id
               WHERE d.patient_id = %s AND q.measured_at IS NOT NULL AND q.reason <> 'duplicate' AND q.layer <> 'bronze_field'
                 AND q.arrival_minute >= %s AND q.arrival_minute < %s""",
            (malformed, MALFORMED[0], MALFORMED[1] + timedelta(minutes=2))).fetchone()[0]
        readings = connection.execute(
            "SELECT count(*) FROM kidjamo.measurements WHERE patient_id = %s AND arrival_minute >= %s AND arrival_minute < %s",
            (malformed, MALFORMED[0], MALFORMED[1] + timedelta(minutes=2))).fetchone()[0]
        emptied_fields = [path.strip().rsplit(".", 1)[-1] for (paths,) in connection.execute(
            """SELECT q.field FROM kidjamo.quarantine AS q JOIN kidjamo.devices AS d ON d.device_id = q.device_id
               WHERE d.patient_id = %s AND q.layer = 'bronze_field' AND q.arrival_minute >= %s AND q.arrival_minute < %s""",
            (malformed, MALFORMED[0], MALFORMED[1] + timedelta(minutes=2))) for path in paths.split(",")]
    assert quarantined > 0 or emptied_fields, "the malformed window quarantines readings or fields"
    whole_readings = [o for o in errors if "note" in o]
    assert len(whole_readings) == quarantined * len(fhir.VITAL_SIGNS)
    assert all("quarantined" in o["note"][0]["text"] for o in whole_readings)
    # A reading kept with a quarantined field emptied: that vital is error (not "not sent"), the others have values.
    vital_columns = {vital.column for vital in fhir.VITAL_SIGNS}
    assert len(errors) - len(whole_readings) == sum(column in vital_columns for column in emptied_fields)
    assert len(observations) == (readings + quarantined) * len(fhir.VITAL_SIGNS)
    assert all(not resource_problems(o) for o in observations)


def test_export_and_validate_from_the_command_line(simulated_day):
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("KIDJAMO_")},
                   "KIDJAMO_HOME": os.environ["KIDJAMO_HOME"], "KIDJAMO_DATABASE_URL": simulated_day.database_url,
                   "KIDJAMO_LAKE_URL": simulated_day.lake.root_url}
    patient = simulated_day.patient_ids[0]
    exported = subprocess.run([KIDJAMO, "fhir", "export", "--since", HYPOXIA[0].isoformat(), "--until", HYPOXIA[1].isoformat(),
                               "--patient", patient], env=environment, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    folder = exported.stdout.strip().splitlines()[-1].removeprefix("manifest: ").removesuffix("/manifest.json")
    assert "Observation" in exported.stdout and folder.startswith("exports/fhir/")
    validated = subprocess.run([KIDJAMO, "fhir", "validate", folder], env=environment, capture_output=True, text=True)
    assert validated.returncode == 0, validated.stderr
    assert "Observation" in validated.stdout and "checked" in validated.stdout
    unknown = subprocess.run([KIDJAMO, "fhir", "export", "--since", "2026-11-26", "--patient", "nobody"], env=environment,
                             capture_output=True, text=True)
    assert unknown.returncode != 0 and "nobody" in unknown.stderr


def test_validate_names_the_file_line_and_problem_of_a_broken_resource(simulated_day, minute_export):
    result, manifest, resources = minute_export
    lake: Lake = simulated_day.lake
    broken = f"{result['export']}-broken"
    for output in manifest["output"]:
        lake.write_bytes(f"{broken}/{output['type']}.ndjson", lake.read_bytes(f"{result['export']}/{output['type']}.ndjson"))
    observation = dict(resources["Observation"][0], valueQuantity={"value": 1, "unit": "degF", "system": fhir.UCUM, "code": "[degF]"})
    observation.pop("dataAbsentReason", None)
    lines = lake.read_bytes(f"{broken}/Observation.ndjson").splitlines()
    lake.write_bytes(f"{broken}/Observation.ndjson", b"\n".join([json.dumps(observation).encode(), *lines[1:]]) + b"\n")
    lake.write_bytes(f"{broken}/manifest.json", json.dumps(manifest).encode())
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("KIDJAMO_")},
                   "KIDJAMO_HOME": os.environ["KIDJAMO_HOME"], "KIDJAMO_DATABASE_URL": simulated_day.database_url,
                   "KIDJAMO_LAKE_URL": lake.root_url}
    validated = subprocess.run([KIDJAMO, "fhir", "validate", broken], env=environment, capture_output=True, text=True)
    assert validated.returncode != 0
    assert f"{broken}/Observation.ndjson line 1" in validated.stderr and "valueQuantity.code" in validated.stderr
