"""Analysts read the lake's silver and gold layers with DuckDB, as docs/duckdb.md shows, and get
the same numbers as the layers themselves and as the PostgreSQL warehouse."""

from __future__ import annotations

import duckdb
import psycopg
import pytest

from kidjamo.lake.duckdb import connect_lake
from kidjamo.warehouse.pseudonyms import pseudonym
from tests.interop.conftest import DAY, HYPOXIA, PSEUDONYM_KEY

pytestmark = pytest.mark.slow


def test_plain_duckdb_sql_reads_hive_partitioned_silver_as_documented(simulated_day):
    root = simulated_day.lake.local_path("")
    # The query of docs/duckdb.md, verbatim but for the lake path.
    rows = duckdb.sql(f"""
        SELECT dt, count(*) AS readings, count(DISTINCT patient_id) AS patients, min(spo2) AS lowest_spo2
        FROM read_parquet('{root}/silver/vitals/*/*/*/part-0.parquet', hive_partitioning = true)
        GROUP BY dt ORDER BY dt""").fetchall()
    with psycopg.connect(simulated_day.database_url) as connection:
        loaded, lowest = connection.execute("SELECT count(*), min(spo2) FROM kidjamo.measurements").fetchone()
    assert sum(row[1] for row in rows) == loaded > 8000
    assert {str(row[0]) for row in rows} <= {f"{DAY:%Y-%m-%d}", "2026-11-27"}  # hive partition dt, typed as a date
    assert max(row[2] for row in rows) == 3
    assert min(row[3] for row in rows) == pytest.approx(lowest, abs=0.05)


def test_partition_columns_prune_to_one_arrival_hour(simulated_day):
    connection = connect_lake(simulated_day.lake)
    hour = HYPOXIA[0].hour
    in_hour = connection.execute(f"SELECT count(*) FROM silver WHERE dt = '{DAY:%Y-%m-%d}' AND hh = {hour}").fetchone()[0]
    by_arrival = connection.execute(f"""SELECT count(*) FROM silver
        WHERE arrival_minute >= TIMESTAMPTZ '{HYPOXIA[0].isoformat()}' AND arrival_minute < TIMESTAMPTZ '{HYPOXIA[1].isoformat()}'""").fetchone()[0]
    assert in_hour == by_arrival == 3 * 120


def test_gold_patient_minutes_through_duckdb_show_the_hypoxia_hour(simulated_day):
    connection = connect_lake(simulated_day.lake)
    hypoxic = simulated_day.patient_ids[0]
    minutes = connection.execute(
        "SELECT count(*) FROM gold WHERE patient_id = ? AND spo2_min < 90 AND minute >= ? AND minute < ?",
        [hypoxic, HYPOXIA[0], HYPOXIA[1]]).fetchone()[0]
    others = connection.execute("SELECT count(*) FROM gold WHERE patient_id <> ? AND spo2_min < 90", [hypoxic]).fetchone()[0]
    assert minutes >= 55 and others == 0


def test_pseudonymized_views_carry_the_analytics_keys_and_no_identifiers(simulated_day):
    connection = connect_lake(simulated_day.lake, pseudonymize=True, pseudonym_key=PSEUDONYM_KEY)
    columns = [row[0] for row in connection.execute("DESCRIBE silver").fetchall()]
    assert "patient_key" in columns and "device_key" in columns
    assert not {"patient_id", "device_id", "message_id", "record_hash", "age_years"} & set(columns)
    keys = {row[0] for row in connection.execute("SELECT DISTINCT patient_key FROM silver").fetchall()}
    assert keys == {pseudonym("patient", patient_id, PSEUDONYM_KEY) for patient_id in simulated_day.patient_ids}
    with psycopg.connect(simulated_day.database_url) as database:
        analytics_keys = {row[0] for row in database.execute("SELECT pseudonym FROM kidjamo.pseudonyms WHERE subject = 'patient'")}
    assert keys == analytics_keys
    assert connection.execute("SELECT count(*) FROM gold WHERE patient_key IS NULL").fetchone()[0] == 0


def test_pseudonymized_views_refuse_to_open_without_the_key(simulated_day):
    with pytest.raises(ValueError, match="KIDJAMO_PSEUDONYM_KEY"):
        connect_lake(simulated_day.lake, pseudonymize=True)
