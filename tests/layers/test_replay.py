"""Re-running is safe: the same minute twice, a replay from raw, and one wide run equal to minute runs."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pyarrow.parquet as pq
import pytest

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.storage import Lake
from transforms.pipeline import process_interval
from transforms.registry import import_registry
from tests.layers.helpers import ARRIVAL, land

MINUTES = 3
PROCESSING_COLUMNS = {"ingested_at", "run_id"}  # when and by which run: the only columns allowed to differ


def _land_three_minutes(lake: Lake, fleet: Fleet) -> None:
    for offset in range(MINUTES):
        arrival = ARRIVAL + timedelta(minutes=offset)
        readings = fleet.readings(arrival - timedelta(minutes=1), arrival, hypoxia_patient=True)
        lines = [json.dumps(r) for r in readings]
        if offset == 1:
            lines += [lines[0], "{truncated", json.dumps({**readings[1], "patient_id": "someone-else"})]
        if offset == 2:
            previous = fleet.readings(arrival - timedelta(minutes=2), arrival - timedelta(minutes=1))
            lines.append(json.dumps(previous[0]))  # a resend of a reading loaded by the previous minute
        land(lake, f"batch-{offset}.ndjson", lines, minute=arrival)


def _lake_snapshot(lake: Lake, *, per_batch: bool = True) -> dict:
    """Every lake file's content; ``per_batch=False`` leaves out the per-batch alert candidates."""
    snapshot = {}
    for layer in ("raw", "bronze", "quarantine", "silver", "gold"):
        for lake_file in lake.list_files(layer):
            path = lake_file.path
            if not per_batch and path.endswith("alert_candidates.parquet"):
                continue  # candidates are judged per batch: one wide batch legitimately groups them differently
            if path.endswith(".parquet"):
                table = pq.read_table(lake.local_path(path))
                table = table.drop([c for c in table.column_names if c in PROCESSING_COLUMNS])
                snapshot[path] = sorted(json.dumps(row, default=str, sort_keys=True) for row in table.to_pylist())
            elif not path.endswith("_manifest.json"):
                snapshot[path] = lake.read_bytes(path)
    return snapshot


def _database_snapshot(url: str) -> dict:
    with psycopg.connect(url) as connection:
        return {
            "measurements": connection.execute(
                "SELECT device_id, measured_at, raw_file, record_index, spo2 FROM kidjamo.measurements ORDER BY 1, 2").fetchall(),
            "quarantine": connection.execute(
                "SELECT raw_file, record_index, layer, reason FROM kidjamo.quarantine ORDER BY 1, 2, 3").fetchall(),
            "alerts": connection.execute(
                "SELECT patient_id, rule_id, severity, status, reading_count FROM kidjamo.alerts ORDER BY 1, 2").fetchall(),
            "notifications": connection.execute("SELECT count(*) FROM kidjamo.notifications").fetchone()[0],
        }


@pytest.fixture
def fleet(fresh_database_url, tmp_path):
    fleet = Fleet.generate(4, seed=3)
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), fresh_database_url, pseudonym_key="test-key")
    return fleet


def _minute_runs(lake: Lake, url: str, prefix: str) -> None:
    for offset in range(MINUTES):
        start = ARRIVAL + timedelta(minutes=offset)
        process_interval(start, start + timedelta(minutes=1), lake=lake, database_url=url, run_id=f"{prefix}-{offset}")


def test_rerunning_minutes_after_landing_is_gone_changes_nothing(fleet, fresh_database_url, lake):
    _land_three_minutes(lake, fleet)
    _minute_runs(lake, fresh_database_url, "first")
    lake_before, database_before = _lake_snapshot(lake), _database_snapshot(fresh_database_url)
    assert lake.list_files("landing") == []
    assert len(database_before["measurements"]) == MINUTES * 2 * 4
    assert {reason for *_, reason in database_before["quarantine"]} == {"duplicate", "invalid_json", "device_patient_mismatch"}

    _minute_runs(lake, fresh_database_url, "replay")
    assert _lake_snapshot(lake) == lake_before
    assert _database_snapshot(fresh_database_url) == database_before


@pytest.mark.parametrize("chunk", [timedelta(hours=1), timedelta(minutes=2)], ids=["one-chunk", "chunked"])
def test_one_wide_run_equals_the_minute_runs(fleet, fresh_database_url, postgres_server, lake, tmp_path, chunk):
    _land_three_minutes(lake, fleet)
    _minute_runs(lake, fresh_database_url, "minute")

    wide_lake = Lake(f"file://{tmp_path / 'wide-lake'}")
    _land_three_minutes(wide_lake, fleet)
    wide_url = _clone_registry_database(postgres_server, fresh_database_url, tmp_path)
    counts = process_interval(ARRIVAL, ARRIVAL + timedelta(minutes=MINUTES), lake=wide_lake, database_url=wide_url,
                              run_id="wide", chunk=chunk)
    assert counts["gate_silver"]["accounting"]["duplicates"] == 2

    assert _lake_snapshot(wide_lake, per_batch=False) == _lake_snapshot(lake, per_batch=False)
    minute_db, wide_db = _database_snapshot(fresh_database_url), _database_snapshot(wide_url)
    assert wide_db["measurements"] == minute_db["measurements"]
    assert wide_db["quarantine"] == minute_db["quarantine"]
    assert [a[:3] for a in wide_db["alerts"]] == [a[:3] for a in minute_db["alerts"]]


def _clone_registry_database(server, source_url: str, tmp_path) -> str:
    """A second migrated database holding the same registry (a clean warehouse for the wide run)."""
    from kidjamo.warehouse import migrations

    name = "wide_" + tmp_path.name.lower().replace("-", "_")[:40]
    with psycopg.connect(server.url("postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    migrations.migrate(url)
    with psycopg.connect(source_url) as source, psycopg.connect(url) as target:
        for table, columns in (("patients", "patient_id, birth_date, sex, genotype, care_team, baseline_spo2"),
                               ("devices", "device_id, patient_id, active")):
            rows = source.execute(f"SELECT {columns} FROM kidjamo.{table}").fetchall()
            placeholders = ", ".join(["%s"] * len(columns.split(",")))
            target.cursor().executemany(f"INSERT INTO kidjamo.{table} ({columns}) VALUES ({placeholders})", rows)
    return url


def test_an_empty_minute_succeeds_and_writes_nothing(fresh_database_url, lake):
    counts = process_interval(ARRIVAL, ARRIVAL + timedelta(minutes=1), lake=lake, database_url=fresh_database_url,
                              run_id="empty")
    assert counts["to_raw"]["raw_records"] == 0
    assert counts["gate_silver"]["accounting"] == {"raw_records": 0, "bronze": 0, "bronze_quarantined": 0,
                                                   "silver": 0, "rejected": 0, "duplicates": 0}
    assert counts["load"]["measurements"]["inserted"] == 0
    assert lake.list_files("") == []
