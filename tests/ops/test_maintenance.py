"""Maintenance functions, run without Airflow against a real lake, a real PostgreSQL and a real Airflow CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from transforms import maintenance, partitions

UTC = timezone.utc
DAY = date(2026, 11, 20)
AS_OF = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
SCHEMA = pa.schema([
    pa.field("device_id", pa.string()),
    pa.field("spo2", pa.float64()),
    pa.field("arrival_minute", pa.timestamp("us", tz="UTC")),
])


def _minute_rows(minute: datetime, devices: list[str], spo2: float = 97.0) -> pa.Table:
    return pa.table({"device_id": devices, "spo2": [spo2] * len(devices), "arrival_minute": [minute] * len(devices)},
                    schema=SCHEMA)


def _write_minute(lake: Lake, layer: str, minute: datetime, table: pa.Table) -> str:
    path = f"{layer}/vitals/{minute_partition(minute)}/part-0.parquet"
    lake.write_parquet(path, table)
    return path


def _day_minutes(day: date, count: int) -> list[datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [start + timedelta(minutes=37 * index) for index in range(count)]  # spread over several hours


def _rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(name).to_pylist() for name in table.column_names)))


@pytest.fixture
def silver_day(lake: Lake) -> list[datetime]:
    minutes = _day_minutes(DAY, 30)
    for index, minute in enumerate(minutes):
        _write_minute(lake, "silver", minute, _minute_rows(minute, [f"device-{index:03d}", "device-999"]))
    return minutes


def test_closed_days_end_a_grace_period_before_as_of():
    assert maintenance.closed_days(AS_OF, lookback_days=2) == [date(2026, 11, 20), date(2026, 11, 21)]
    just_after_midnight = datetime(2026, 11, 22, 0, 10, tzinfo=UTC)
    assert maintenance.closed_days(just_after_midnight, lookback_days=1) == [date(2026, 11, 20)]


def test_compaction_turns_a_days_minute_files_into_one_file_with_the_same_rows(lake: Lake, silver_day):
    before = lake.read_parquet_prefix(f"silver/vitals/dt={DAY}")
    result = maintenance.compact_day(lake, "silver", DAY)
    files = lake.list_files(f"silver/vitals/dt={DAY}")
    assert [f.path for f in files] == [f"silver/vitals/dt={DAY}/compacted-part-0.parquet"]
    assert result == {"files_before": 30, "files_after": 1, "rows": 60}
    after = lake.read_parquet_prefix(f"silver/vitals/dt={DAY}")
    assert _rows(after) == _rows(before)
    assert after.column("arrival_minute").to_pylist() == sorted(after.column("arrival_minute").to_pylist())


def test_compacting_twice_changes_nothing(lake: Lake, silver_day):
    maintenance.compact_day(lake, "silver", DAY)
    first = lake.read_bytes(f"silver/vitals/dt={DAY}/compacted-part-0.parquet")
    again = maintenance.compact_day(lake, "silver", DAY)
    assert again == {"files_before": 1, "files_after": 1, "rows": 60}
    assert lake.read_bytes(f"silver/vitals/dt={DAY}/compacted-part-0.parquet") == first


def test_a_minute_reprocessed_after_compaction_replaces_its_rows_without_duplicates(lake: Lake, silver_day):
    maintenance.compact_day(lake, "silver", DAY)
    reprocessed = silver_day[4]
    _write_minute(lake, "silver", reprocessed, _minute_rows(reprocessed, ["device-004"], spo2=88.0))
    result = maintenance.compact_day(lake, "silver", DAY)
    table = lake.read_parquet_prefix(f"silver/vitals/dt={DAY}")
    assert result["rows"] == 59 and table.num_rows == 59
    minute_rows = [row for row in _rows(table) if row[2] == reprocessed]
    assert minute_rows == [("device-004", 88.0, reprocessed)]


def test_each_minute_file_name_is_compacted_apart(lake: Lake):
    minutes = _day_minutes(DAY, 3)
    candidates = pa.table({"patient_id": ["patient-1"], "rule_id": ["hypoxia_emergency"]})
    for minute in minutes:
        _write_minute(lake, "gold", minute, _minute_rows(minute, ["device-001", "device-002"]))
        lake.write_parquet(f"gold/vitals/{minute_partition(minute)}/alert_candidates.parquet",
                           candidates.append_column("arrival_minute", pa.array([minute], SCHEMA.field("arrival_minute").type)))
    result = maintenance.compact_day(lake, "gold", DAY)
    assert result == {"files_before": 6, "files_after": 2, "rows": 9}
    assert [f.path.rsplit("/", 1)[1] for f in lake.list_files(f"gold/vitals/dt={DAY}")] == [
        "compacted-alert_candidates.parquet", "compacted-part-0.parquet"]
    features = lake.read_parquet([f"gold/vitals/dt={DAY}/compacted-part-0.parquet"])
    assert features.schema.names == SCHEMA.names and features.num_rows == 6


def test_raw_is_never_compacted(lake: Lake, silver_day):
    raw_paths = []
    for minute in silver_day[:3]:
        path = f"raw/vitals/{minute_partition(minute)}/sensor-batch.ndjson"
        lake.write_bytes(path, b'{"device_id": "device-001"}\n')
        raw_paths.append(path)
    before = {path: lake.read_bytes(path) for path in raw_paths}
    summary = maintenance.compact_closed_days(lake, AS_OF, lookback_days=3)
    assert "raw" not in summary and summary["silver"]["days_compacted"] == 1
    assert {f.path for f in lake.list_files("raw/vitals")} == set(raw_paths)
    assert {path: lake.read_bytes(path) for path in raw_paths} == before
    with pytest.raises(ValueError, match="never compacted"):
        maintenance.compact_day(lake, "raw", DAY)


def test_the_open_day_is_not_compacted(lake: Lake):
    today = AS_OF.date()
    for minute in _day_minutes(today, 2):
        _write_minute(lake, "gold", minute, _minute_rows(minute, ["device-001"]))
    summary = maintenance.compact_closed_days(lake, AS_OF, lookback_days=3)
    assert summary["gold"]["days_compacted"] == 0
    assert len(lake.list_files(f"gold/vitals/dt={today}")) == 2


def test_compaction_fills_a_column_older_files_lack_with_nulls(lake: Lake):
    old, new = _day_minutes(DAY, 2)
    _write_minute(lake, "bronze", old, _minute_rows(old, ["device-001"]).drop_columns(["spo2"]))
    _write_minute(lake, "bronze", new, _minute_rows(new, ["device-002"], spo2=95.0))
    maintenance.compact_day(lake, "bronze", DAY)
    table = lake.read_parquet_prefix(f"bronze/vitals/dt={DAY}")
    assert _rows(table) == [("device-001", None, old), ("device-002", 95.0, new)]


def test_lake_sizes_count_files_and_bytes_per_layer(lake: Lake, silver_day):
    lake.write_bytes("landing/vitals/dt=2026-11-20/hh=00/mm=00/batch.ndjson", b"x" * 10)
    lake.write_bytes("quality/validations/bronze/2026-11-20T00-00.json", b"{}")
    sizes = maintenance.lake_sizes(lake)
    assert sizes["landing"] == {"files": 1, "bytes": 10}
    assert sizes["quality"] == {"files": 1, "bytes": 2}
    assert sizes["silver"]["files"] == 30 and sizes["silver"]["bytes"] > 0
    assert sizes["raw"] == {"files": 0, "bytes": 0}


def test_partition_window_covers_today_and_the_days_ahead():
    assert partitions.partition_window(date(2031, 1, 30), 3) == (date(2031, 1, 30), date(2031, 2, 2))
    with pytest.raises(ValueError, match="days_ahead"):
        partitions.partition_window(date(2031, 1, 30), -1)


def test_database_sizes_sum_partitions_into_their_table(fresh_database_url):
    with psycopg.connect(fresh_database_url) as connection:
        connection.execute("CREATE TABLE kidjamo.size_probe (day date NOT NULL, payload text) PARTITION BY RANGE (day)")
        connection.execute("CREATE TABLE kidjamo.size_probe_1 PARTITION OF kidjamo.size_probe FOR VALUES FROM ('2031-01-01') TO ('2031-01-02')")
        connection.execute("CREATE TABLE kidjamo.size_probe_2 PARTITION OF kidjamo.size_probe FOR VALUES FROM ('2031-01-02') TO ('2031-01-03')")
        connection.execute("""INSERT INTO kidjamo.size_probe
                              SELECT DATE '2031-01-01' + (n % 2), repeat('x', 200) FROM generate_series(1, 2000) AS n""")
        partition_bytes = connection.execute(
            "SELECT pg_total_relation_size('kidjamo.size_probe_1') + pg_total_relation_size('kidjamo.size_probe_2')").fetchone()[0]
    sizes = maintenance.database_sizes(fresh_database_url)
    assert sizes["relations"]["kidjamo.size_probe"] == partition_bytes > 0
    assert sizes["database_bytes"] > partition_bytes
    assert not any(name.startswith("kidjamo.size_probe_") for name in sizes["relations"])


@pytest.fixture(scope="module")
def airflow_metadata(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real, migrated Airflow metadata database (SQLite) and the environment that points at it."""
    home = tmp_path_factory.mktemp("airflow-home")
    environment = {**os.environ, "AIRFLOW_HOME": str(home),
                   "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                   "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], env=environment, check=True, capture_output=True, timeout=300)
    return environment


@pytest.mark.slow
def test_airflow_db_clean_purges_old_metadata_and_keeps_recent(airflow_metadata):
    database = airflow_metadata["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM log")
        connection.execute("INSERT INTO log (dttm, event) VALUES ('2026-09-01 00:00:00.000000', 'old-event')")
        connection.execute("INSERT INTO log (dttm, event) VALUES ('2026-11-21 00:00:00.000000', 'recent-event')")
    result = maintenance.clean_airflow_metadata(AS_OF, keep_days=30, tables=("log",), environment=airflow_metadata)
    assert result["clean_before"].startswith("2026-10-23")
    with sqlite3.connect(database) as connection:
        events = {row[0] for row in connection.execute("SELECT event FROM log")}
    assert "old-event" not in events and "recent-event" in events


@pytest.mark.slow
def test_airflow_db_clean_failure_names_the_command(airflow_metadata):
    with pytest.raises(RuntimeError, match="airflow db clean"):
        maintenance.clean_airflow_metadata(AS_OF, keep_days=30, tables=("no_such_table",), environment=airflow_metadata)
