"""A vital outside its plausibility range is quarantined, never silently: ``implausible_vital`` (high)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import psycopg
from psycopg.rows import dict_row

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.schema import QUARANTINE
from tests.alerts.conftest import alerts
from tests.clinical.readings import T0
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules
from transforms.pipeline import process_interval
from transforms.registry import import_registry

RULES = default_rules()


def quarantined(*rows: tuple[str, str, dict]) -> pa.Table:
    """Bronze quarantine rows (device, field at fault, vitals of the original payload)."""
    records = []
    for index, (device_id, field, vitals) in enumerate(rows):
        text = json.dumps({"device_id": device_id, "patient_id": "p?", "timestamp": T0.isoformat(), "vitals": vitals})
        records.append({"layer": "bronze", "reason": "out_of_range" if field else "invalid_json", "field": field,
                        "detail": f"{field}: outside the plausible range", "device_id": device_id, "measured_at": T0,
                        "original_text": text, "raw_file": "raw/vitals/q.json", "record_index": index,
                        "record_hash": "h", "arrival_minute": T0, "run_id": "r"})
    return pa.Table.from_pylist(records, schema=QUARANTINE)


def run(url, settings, quarantine):
    return raise_alerts(url, pa.Table.from_pylist([]), interval_start=T0, interval_end=T0 + timedelta(minutes=1),
                        run_id="r", rules=RULES, settings=settings, quarantine=quarantine)


def test_an_spo2_below_50_raises_implausible_vital_high_with_the_value(alerts_db, log_settings):
    run(alerts_db, log_settings, quarantined(("d1", "vitals.spo2", {"spo2": 40.0, "heart_rate": 80})))
    (alert,) = alerts(alerts_db)
    assert (alert["patient_id"], alert["rule_id"], alert["severity"]) == ("p1", "implausible_vital", "high")
    assert alert["evidence"]["values"] == {"vitals.spo2": 40.0}
    assert alert["evidence"]["thresholds"] == {"plausible_ranges": {"vitals.spo2": [50, 100]}}
    assert alert["lineage"][0]["raw_file"] == "raw/vitals/q.json"


def test_each_clinical_vital_out_of_range_alerts(alerts_db, log_settings):
    run(alerts_db, log_settings, quarantined(("d1", "vitals.heart_rate", {"heart_rate": 20}),
                                             ("d2", "vitals.temperature", {"temperature": 29.0}),
                                             ("d3", "vitals.respiratory_rate", {"respiratory_rate": 2})))
    assert sorted((a["patient_id"], a["rule_id"]) for a in alerts(alerts_db)) == \
        [("p1", "implausible_vital"), ("p2", "implausible_vital"), ("p3", "implausible_vital")]


def test_a_non_clinical_field_or_an_unparsable_record_raises_no_implausible_vital(alerts_db, log_settings):
    run(alerts_db, log_settings, quarantined(("d1", "vitals.ambient_temp", {"ambient_temp": 70.0}),
                                             ("d2", None, {})))
    assert alerts(alerts_db) == []


def test_re_running_the_interval_adds_nothing(alerts_db, log_settings):
    quarantine = quarantined(("d1", "vitals.spo2", {"spo2": 40.0}))
    run(alerts_db, log_settings, quarantine)
    assert run(alerts_db, log_settings, quarantine)["opened"] == 0
    assert alerts(alerts_db)[0]["reading_count"] == 1


def test_an_implausible_reading_through_the_pipeline_is_quarantined_and_alerted(fresh_database_url, lake, tmp_path,
                                                                                 log_settings):
    fleet = Fleet.generate(2, seed=3, reference_date=date(2026, 11, 27))
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), fresh_database_url, pseudonym_key="k")
    arrival = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
    readings = fleet.readings(arrival - timedelta(minutes=1), arrival)
    readings[0]["vitals"]["spo2"] = 42.0
    write_landing(lake, arrival, readings, name="minute")
    process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=fresh_database_url, run_id="m",
                     settings=log_settings)
    with psycopg.connect(fresh_database_url, row_factory=dict_row) as connection:
        (row,) = connection.execute("SELECT reason, field FROM kidjamo.quarantine").fetchall()
        (alert,) = connection.execute("SELECT patient_id, rule_id, severity FROM kidjamo.alerts").fetchall()
    assert (row["reason"], row["field"]) == ("out_of_range", "vitals.spo2")
    assert alert == {"patient_id": readings[0]["patient_id"], "rule_id": "implausible_vital", "severity": "high"}
