"""Loads are idempotent, one transaction each, run as the pipeline role and create partitions on demand."""

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pytest

from transforms.load import MEASUREMENT_COLUMNS, load_measurements, load_quarantine
from transforms.views import flush_hourly_rollup, refresh_views
from kidjamo.lake.schema import QUARANTINE
from warehouse.support import silver_batch

T0 = datetime(2026, 11, 27, 15, 30, tzinfo=timezone.utc)


def readings(n: int, start: datetime = T0) -> list[tuple[str, str, datetime]]:
    return [("device-001", "patient-001", start + timedelta(seconds=30 * i)) for i in range(n)]


def count(url: str, sql: str = "SELECT count(*) FROM kidjamo.measurements") -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchone()[0]


def test_measurements_table_holds_every_silver_column(fresh_database_url):
    with psycopg.connect(fresh_database_url) as connection:
        columns = {row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'kidjamo' AND table_name = 'measurements'")}
    assert set(MEASUREMENT_COLUMNS) <= columns


def test_load_inserts_every_staged_reading(registered_url):
    result = load_measurements(registered_url, silver_batch(readings(4)), "run-1")
    assert (result["staged"], result["inserted"], result["already_present"]) == (4, 4, 0)
    assert count(registered_url) == 4


def test_reloading_a_batch_changes_nothing(registered_url):
    batch = silver_batch(readings(4))
    load_measurements(registered_url, batch, "run-1")
    with psycopg.connect(registered_url) as connection:
        before = connection.execute("SELECT array_agg(loaded_at ORDER BY measured_at), array_agg(run_id) FROM kidjamo.measurements").fetchone()
    result = load_measurements(registered_url, batch, "run-2")
    assert (result["inserted"], result["already_present"]) == (0, 4)
    with psycopg.connect(registered_url) as connection:
        after = connection.execute("SELECT array_agg(loaded_at ORDER BY measured_at), array_agg(run_id) FROM kidjamo.measurements").fetchone()
    assert after == before


def test_loaded_values_match_the_silver_row(registered_url):
    load_measurements(registered_url, silver_batch(readings(1), spo2=91.5), "run-1")
    with psycopg.connect(registered_url) as connection:
        row = connection.execute(
            "SELECT spo2, pain_scale, raw_file, record_index, record_hash, arrival_minute, is_late, run_id, heat_index_unknown"
            " FROM kidjamo.measurements").fetchone()
    assert row == (91.5, 2, "raw/vitals/dt=2026-11-27/hh=15/mm=31/batch.ndjson", 0, f"{0:064x}",
                   datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc), False, "run-1", True)


def test_timestamps_load_as_utc_whatever_the_session_time_zone(registered_url, monkeypatch):
    # The CSV carries naive UTC timestamps: the load must not read them in the server's or client's zone.
    monkeypatch.setenv("PGTZ", "America/New_York")
    load_measurements(registered_url, silver_batch(readings(2)), "run-1")
    with psycopg.connect(registered_url) as connection:
        times = [row[0] for row in connection.execute(
            "SELECT measured_at FROM kidjamo.measurements ORDER BY measured_at")]
        assert connection.execute("SHOW TimeZone").fetchone()[0] == "America/New_York"
    assert times == [T0, T0 + timedelta(seconds=30)]


def test_a_failing_row_midway_leaves_nothing_loaded(registered_url):
    batch = silver_batch(readings(5, start=datetime(2031, 5, 4, tzinfo=timezone.utc)))
    spo2 = batch["spo2"].to_pylist()
    spo2[2] = 140.0  # violates the plausibility CHECK
    batch = batch.set_column(batch.schema.get_field_index("spo2"), "spo2", pa.array(spo2, pa.float64()))
    with pytest.raises(psycopg.errors.CheckViolation):
        load_measurements(registered_url, batch, "run-1")
    assert count(registered_url) == 0
    assert count(registered_url, "SELECT count(*) FROM kidjamo.vitals_hourly_rollup") == 0
    assert count(registered_url, "SELECT count(*) FROM kidjamo.device_status") == 0
    assert count(registered_url, "SELECT count(*) FROM pg_class WHERE relname = 'measurements_20310504'") == 0


def test_readings_far_in_the_past_and_future_create_their_partitions(registered_url):
    batch = silver_batch([("device-001", "patient-001", datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
                          ("device-001", "patient-001", datetime(2091, 1, 1, tzinfo=timezone.utc))])
    result = load_measurements(registered_url, batch, "run-1")
    assert (result["inserted"], result["partitions_created"]) == (2, 2)
    assert count(registered_url, "SELECT count(*) FROM kidjamo.measurements_19991231") == 1
    assert count(registered_url, "SELECT count(*) FROM kidjamo.measurements_20910101") == 1


def test_load_runs_with_the_pipeline_role_rights_not_the_superuser_ones(registered_url):
    with psycopg.connect(registered_url) as connection:
        connection.execute("REVOKE INSERT ON kidjamo.measurements FROM kidjamo_pipeline")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        load_measurements(registered_url, silver_batch(readings(1)), "run-1")


def test_hourly_rollup_is_recomputed_for_the_touched_hours(registered_url):
    load_measurements(registered_url, silver_batch(readings(2), spo2=90.0), "run-1")
    load_measurements(registered_url, silver_batch(readings(2, start=T0 + timedelta(minutes=1)), spo2=96.0), "run-2")
    with psycopg.connect(registered_url) as connection:
        row = connection.execute(
            "SELECT readings, spo2_min, spo2_max, spo2_mean, spo2_p50 FROM kidjamo.vitals_hourly_rollup"
            " WHERE patient_id = 'patient-001' AND hour = '2026-11-27 15:00+00'").fetchone()
    assert row == (4, 90.0, 96.0, 93.0, 93.0)


ROLLUP_ROW = ("SELECT readings, spo2_min, spo2_max, spo2_mean, spo2_p50 FROM kidjamo.vitals_hourly_rollup"
              " WHERE patient_id = 'patient-001' AND hour = '2026-11-27 15:00+00'")


def test_a_deferred_rollup_is_recomputed_by_the_flush_as_a_direct_load_would(registered_url):
    first = load_measurements(registered_url, silver_batch(readings(2), spo2=90.0), "run-1", defer_rollup=True)
    load_measurements(registered_url, silver_batch(readings(2, start=T0 + timedelta(minutes=1)), spo2=96.0), "run-2",
                      defer_rollup=True)
    assert (first["hours_recomputed"], first["hours_deferred"]) == (0, 1)
    assert count(registered_url, "SELECT count(*) FROM kidjamo.vitals_hourly_rollup") == 0
    assert count(registered_url, "SELECT count(*) FROM kidjamo.vitals_hourly_pending") == 1
    assert flush_hourly_rollup(registered_url) == 1
    with psycopg.connect(registered_url) as connection:
        assert connection.execute(ROLLUP_ROW).fetchone() == (4, 90.0, 96.0, 93.0, 93.0)
    assert count(registered_url, "SELECT count(*) FROM kidjamo.vitals_hourly_pending") == 0
    assert flush_hourly_rollup(registered_url) == 0
    again = load_measurements(registered_url, silver_batch(readings(2), spo2=90.0), "run-1", defer_rollup=True)
    assert (again["inserted"], again["hours_deferred"]) == (0, 0)


def test_the_flush_works_in_chunks_and_the_heavy_refresh_runs_it(registered_url):
    batch = silver_batch([("device-001", "patient-001", T0 + timedelta(hours=h)) for h in range(5)])
    assert load_measurements(registered_url, batch, "run-1", defer_rollup=True)["hours_deferred"] == 5
    assert flush_hourly_rollup(registered_url, pairs_per_transaction=2) == 5
    assert count(registered_url, "SELECT count(*) FROM kidjamo.vitals_hourly_rollup") == 5
    later = silver_batch([("device-001", "patient-001", T0 + timedelta(hours=6))])
    load_measurements(registered_url, later, "run-2", defer_rollup=True)
    assert refresh_views(registered_url, heavy=True, pseudonym_key="k")["rollup_hours_recomputed"] == 1
    assert count(registered_url, "SELECT count(*) FROM analytics.vitals_hourly") == 6


def test_a_flush_waits_for_a_deferred_load_in_progress(registered_url):
    # A load holds the lock shared until it commits: the flush must see its readings, not skip them.
    holder = psycopg.connect(registered_url)
    holder.execute("SELECT pg_advisory_xact_lock_shared(hashtext('kidjamo.vitals_hourly_pending'))")
    holder.execute("INSERT INTO kidjamo.vitals_hourly_pending VALUES ('patient-001', '2026-11-27 15:00+00')")
    result = []
    flusher = threading.Thread(target=lambda: result.append(flush_hourly_rollup(registered_url)))
    flusher.start()
    flusher.join(timeout=1.5)
    assert flusher.is_alive() and result == []  # blocked behind the load
    holder.commit()
    holder.close()
    flusher.join(timeout=30)
    assert result == [1]


def test_device_status_keeps_the_latest_reading_when_a_late_one_arrives(registered_url):
    load_measurements(registered_url, silver_batch(readings(1, start=T0), overrides={"battery_level": [50.0]}), "run-1")
    load_measurements(registered_url, silver_batch(readings(1, start=T0 - timedelta(hours=2)), overrides={"battery_level": [90.0]}), "run-2")
    with psycopg.connect(registered_url) as connection:
        row = connection.execute("SELECT last_measured_at, battery_level FROM kidjamo.device_status WHERE device_id = 'device-001'").fetchone()
    assert row == (T0, 50.0)


def quarantine_batch(n: int) -> pa.Table:
    arrival = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
    return pa.Table.from_pydict({
        "layer": ["bronze"] * n, "reason": ["out_of_range"] * n, "field": ["vitals.spo2"] * n,
        "detail": ["vitals.spo2: expected 50..100, got 140"] * n, "device_id": ["device-001"] * n,
        "measured_at": [arrival] * n, "original_text": ['{"device_id": "device-001"}'] * n,
        "raw_file": ["raw/vitals/dt=2026-11-27/hh=15/mm=31/batch.ndjson"] * n, "record_index": list(range(n)),
        "record_hash": [None] * n, "arrival_minute": [arrival] * n, "run_id": ["run-1"] * n,
    }, schema=QUARANTINE)


def test_quarantine_load_is_idempotent(registered_url):
    assert load_quarantine(registered_url, quarantine_batch(3), "run-1")["inserted"] == 3
    assert load_quarantine(registered_url, quarantine_batch(3), "run-2") == {"staged": 3, "inserted": 0, "already_present": 3}
    assert count(registered_url, "SELECT count(*) FROM kidjamo.quarantine") == 3


def test_quarantine_daily_counts_follow_the_loads(registered_url):
    load_quarantine(registered_url, quarantine_batch(3), "run-1")
    load_quarantine(registered_url, quarantine_batch(5), "run-2")
    assert count(registered_url, "SELECT records FROM kidjamo.quarantine_daily WHERE day = '2026-11-27' AND reason = 'out_of_range'") == 5


def test_empty_batches_load_nothing(registered_url):
    from kidjamo.lake.schema import SILVER

    assert load_measurements(registered_url, SILVER.empty_table(), "run-1")["staged"] == 0
    assert load_quarantine(registered_url, QUARANTINE.empty_table(), "run-1")["staged"] == 0
