"""Right of access (export) and erasure: database and lake (landing, raw, bronze, quarantine, silver, gold)."""

import csv
import gzip
import hashlib
import json
from datetime import datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.to_raw import landing_to_raw
from kidjamo.lake.manifest import read_manifest
from kidjamo.warehouse.pseudonyms import pseudonym
from transforms.rights import erase_patient, export_patient
from transforms.load import load_measurements, load_quarantine
from transforms.views import refresh_views
from kidjamo.lake.records import split_records
from kidjamo.lake.schema import BRONZE, GOLD, QUARANTINE
from warehouse.support import insert_alert, silver_batch

ARRIVAL = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
PARTITION = "dt=2026-11-27/hh=15/mm=31"
T0 = datetime(2026, 11, 27, 15, 30, tzinfo=timezone.utc)


def reading(device: str, patient: str, second: int) -> dict:
    return {"device_id": device, "patient_id": patient, "timestamp": (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z"),
            "vitals": {"spo2": 95.0, "heart_rate": 80}, "metadata": {"battery_level": 70}}


@pytest.fixture
def held(registered_url, lake):
    """patient-001 and patient-002 in every layer of the lake and in the database."""
    landing = f"landing/vitals/{PARTITION}"
    lake.write_bytes(f"{landing}/batch.ndjson", b"\n".join(json.dumps(reading(d, p, s)).encode() for d, p, s in
                     [("device-001", "patient-001", 0), ("device-002", "patient-002", 0), ("device-001", "patient-001", 30)]) + b"\n")
    lake.write_bytes(f"{landing}/array.json", json.dumps([reading("device-002", "patient-002", 30), reading("device-001", "patient-001", 60)]).encode())
    lake.write_bytes(f"{landing}/single.json.gz", gzip.compress(json.dumps(reading("device-001", "patient-001", 90)).encode()))
    lake.write_bytes(f"{landing}/other.json", json.dumps(reading("device-003", "patient-002", 90)).encode())
    landing_to_raw(lake, ARRIVAL, ARRIVAL + timedelta(minutes=1), run_id="run-1")
    lake.write_bytes(f"landing/vitals/dt=2026-11-27/hh=15/mm=32/late.ndjson", json.dumps(reading("device-001", "patient-001", 120)).encode())

    silver = silver_batch([("device-001", "patient-001", T0), ("device-002", "patient-002", T0), ("device-001", "patient-001", T0 + timedelta(seconds=30))],
                          raw_file=f"raw/vitals/{PARTITION}/batch.ndjson")
    lake.write_parquet(f"silver/vitals/{PARTITION}/part-0.parquet", silver)
    lake.write_parquet(f"bronze/vitals/{PARTITION}/part-0.parquet", silver.select(BRONZE.names))
    gold = pa.Table.from_pylist([{"arrival_minute": ARRIVAL, "patient_id": p, "minute": T0, "readings": 1, "is_late": False} for p in ("patient-001", "patient-002")], schema=GOLD)
    lake.write_parquet(f"gold/vitals/{PARTITION}/part-0.parquet", gold)
    quarantine = pa.Table.from_pylist([
        {"layer": "bronze", "reason": "out_of_range", "detail": "d", "device_id": "device-001", "original_text": "{}",
         "raw_file": "raw/x.json", "record_index": 0, "arrival_minute": ARRIVAL, "run_id": "run-1"},
        {"layer": "bronze", "reason": "invalid_json", "detail": "d", "device_id": None, "original_text": '{"patient_id": "patient-001", oops',
         "raw_file": "raw/x.json", "record_index": 1, "arrival_minute": ARRIVAL, "run_id": "run-1"},
        {"layer": "bronze", "reason": "out_of_range", "detail": "d", "device_id": "device-002", "original_text": "{}",
         "raw_file": "raw/x.json", "record_index": 2, "arrival_minute": ARRIVAL, "run_id": "run-1"},
    ], schema=QUARANTINE)
    lake.write_parquet(f"quarantine/vitals/{PARTITION}/bronze.parquet", quarantine)

    load_measurements(registered_url, silver, "run-1")
    load_quarantine(registered_url, quarantine, "run-1")
    alert_id = insert_alert(registered_url, "patient-001", first_reading_at=T0, last_reading_at=T0)
    insert_alert(registered_url, "patient-002", first_reading_at=T0, last_reading_at=T0)
    with psycopg.connect(registered_url) as connection:
        connection.execute("INSERT INTO kidjamo.alert_events (alert_id, event_key, event_type, severity) VALUES (%s, 'e1', 'opened', 'critical')", (alert_id,))
        connection.execute("INSERT INTO kidjamo.device_credentials (device_id, api_key_verifier, signing_key) VALUES ('device-001', %s, %s)",
                           ("0" * 64, "1" * 64))
        connection.execute("UPDATE kidjamo.patients SET baseline_spo2 = 95 WHERE patient_id = 'patient-001'")
    refresh_views(registered_url, heavy=True, pseudonym_key="test-key")
    return registered_url, lake


def rows_of(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()


# --- export -------------------------------------------------------------------------------------
def test_export_writes_the_patient_database_rows_and_only_theirs(held, tmp_path):
    url, lake = held
    export_patient("patient-001", database_url=url, lake=lake, destination=tmp_path / "out")
    with open(tmp_path / "out" / "database" / "measurements.csv") as handle:
        measurements = list(csv.DictReader(handle))
    assert {row["patient_id"] for row in measurements} == {"patient-001"} and len(measurements) == 2
    for table in ("patients", "devices", "alerts", "alert_events", "device_credentials", "quarantine", "audit_log", "pseudonyms"):
        assert (tmp_path / "out" / "database" / f"{table}.csv").exists(), table
    with open(tmp_path / "out" / "database" / "quarantine.csv") as handle:
        assert [row["record_index"] for row in csv.DictReader(handle)] == ["0", "1"]


def test_export_writes_the_patient_lake_records_of_every_layer(held, tmp_path):
    url, lake = held
    manifest = export_patient("patient-001", database_url=url, lake=lake, destination=tmp_path / "out")
    files = manifest["files"]
    assert files["lake/raw/records.ndjson"] == 4 and files["lake/landing/records.ndjson"] == 1
    for layer in ("bronze/vitals/part-0.parquet", "silver/vitals/part-0.parquet", "gold/vitals/part-0.parquet"):
        table = pq.read_table(tmp_path / "out" / "lake" / layer)
        assert set(table["patient_id"].to_pylist()) == {"patient-001"}, layer
    assert pq.read_table(tmp_path / "out" / "lake" / "quarantine/vitals/bronze.parquet").num_rows == 2
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["devices"] == ["device-001"]


def test_export_is_audited(held, tmp_path):
    url, lake = held
    export_patient("patient-001", database_url=url, lake=lake, destination=tmp_path / "out", actor="dpo@example.org")
    assert rows_of(url, "SELECT actor, on_behalf_of, patient_id FROM kidjamo.audit_log WHERE action = 'patient_export'") == [
        ("postgres", "dpo@example.org", "patient-001")]


def test_export_of_an_unknown_patient_fails(held, tmp_path):
    url, lake = held
    with pytest.raises(LookupError, match="patient-404"):
        export_patient("patient-404", database_url=url, lake=lake, destination=tmp_path / "out")


# --- erasure ------------------------------------------------------------------------------------
def test_erasure_removes_every_database_row_of_the_patient(held):
    url, lake = held
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    with psycopg.connect(url) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
            " WHERE c.relnamespace = 'kidjamo'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " AND a.attname = 'patient_id' AND c.relname <> 'audit_log'")]
        for table in tables:
            assert connection.execute(f"SELECT count(*) FROM {table} WHERE patient_id = 'patient-001'").fetchone()[0] == 0, table
        assert connection.execute("SELECT count(*) FROM kidjamo.quarantine WHERE device_id = 'device-001' OR original_text LIKE '%patient-001%'").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM kidjamo.alert_events").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM kidjamo.device_credentials").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM kidjamo.pseudonyms WHERE identifier IN ('patient-001', 'device-001')").fetchone()[0] == 0


def test_erasure_keeps_the_other_patients(held):
    url, lake = held
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    assert rows_of(url, "SELECT DISTINCT patient_id FROM kidjamo.measurements") == [("patient-002",)]
    assert rows_of(url, "SELECT count(*) FROM kidjamo.quarantine") == [(1,)]
    assert pq.read_table(lake.local_path(f"silver/vitals/{PARTITION}/part-0.parquet"))["patient_id"].to_pylist() == ["patient-002"]


def test_erasure_removes_the_patient_from_the_analytics_views(held):
    url, lake = held
    key = pseudonym("patient", "patient-001", "test-key")
    assert rows_of(url, "SELECT count(*) FROM analytics.vitals_hourly WHERE patient_key = %s", (key,)) == [(1,)]
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    for view in ("vitals_hourly", "patient_daily", "device_health", "active_alerts", "patients_critical"):
        assert rows_of(url, f"SELECT count(*) FROM analytics.{view} WHERE patient_key = %s", (key,)) == [(0,)], view


def test_erasure_rewrites_every_parquet_layer_without_the_patient(held):
    url, lake = held
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    for layer in ("bronze", "silver", "gold"):
        table = pq.read_table(lake.local_path(f"{layer}/vitals/{PARTITION}/part-0.parquet"))
        assert table["patient_id"].to_pylist().count("patient-001") == 0 and table.num_rows >= 1, layer
    quarantine = pq.read_table(lake.local_path(f"quarantine/vitals/{PARTITION}/bronze.parquet"))
    assert quarantine["device_id"].to_pylist() == ["device-002"]


def test_erasure_tombstones_raw_and_landing_records_keeping_positions_and_checksums(held):
    url, lake = held
    before = {name: entry["records"] for name, entry in read_manifest(lake, ARRIVAL).items()}
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    manifest = read_manifest(lake, ARRIVAL)
    for name, entry in manifest.items():
        data = lake.read_bytes(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"], name
        records = split_records(data, name)
        assert len(records) == before[name], name
        assert not any(b"patient-001" in record or b"device-001" in record for record in records), name
    assert [json.loads(r).get("patient_id") for r in split_records(lake.read_bytes(manifest["batch.ndjson"]["path"]), "batch.ndjson")] == [None, "patient-002", None]
    assert b"patient-001" not in lake.read_bytes("landing/vitals/dt=2026-11-27/hh=15/mm=32/late.ndjson")


def test_erasure_redacts_the_audit_images_and_records_itself(held):
    url, lake = held
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key", actor="dpo@example.org")
    assert rows_of(url, "SELECT count(*) FROM kidjamo.audit_log WHERE patient_id = 'patient-001' AND (before IS NOT NULL OR after IS NOT NULL)") == [(0,)]
    assert rows_of(url, "SELECT count(*) FROM kidjamo.audit_log WHERE before::text LIKE %s OR after::text LIKE %s", ("%2015-03-02%", "%2015-03-02%")) == [(0,)]
    (on_behalf_of, detail), = rows_of(url, "SELECT on_behalf_of, detail FROM kidjamo.audit_log WHERE action = 'patient_erasure'")
    assert on_behalf_of == "dpo@example.org" and detail["database_rows_deleted"]["kidjamo.measurements"] == 2


def test_erasing_twice_finds_nothing_the_second_time(held):
    url, lake = held
    erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    second = erase_patient("patient-001", database_url=url, lake=lake, pseudonym_key="test-key")
    assert second["database_rows_deleted"] == {"kidjamo.pseudonyms": 0}
    assert second["lake"] == {"record_files_rewritten": 0, "records_erased": 0, "parquet_files_rewritten": 0, "parquet_rows_erased": 0,
                              "other_files_redacted": 0, "unreadable_files": [],
                              "fhir_export_files_rewritten": 0, "fhir_resources_erased": 0}
