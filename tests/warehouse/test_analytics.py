"""The analytics schema: pseudonymized, commented, refreshed CONCURRENTLY from incremental rollups."""

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pytest

from kidjamo.warehouse.pseudonyms import pseudonym
from transforms.load import load_measurements, load_quarantine
from transforms.views import HEAVY_VIEWS, LIGHT_VIEWS, refresh_views
from warehouse.support import insert_alert, silver_batch

T0 = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)
KEY = "test-key"


def load_hour(url: str, patient: str = "patient-001", device: str = "device-001", spo2_values=(90.0, 92.0, 99.0)) -> None:
    readings = [(device, patient, T0 + timedelta(seconds=30 * i)) for i in range(len(spo2_values))]
    batch = silver_batch(readings, overrides={"spo2": list(spo2_values)})
    load_measurements(url, batch, "run-1")


def fetch(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()


def test_vitals_hourly_has_min_max_mean_and_median_under_a_keyed_pseudonym(registered_url):
    load_hour(registered_url)
    refresh_views(registered_url, heavy=True, pseudonym_key=KEY)
    rows = fetch(registered_url, "SELECT patient_key, hour, readings, spo2_min, spo2_max, spo2_mean, spo2_p50 FROM analytics.vitals_hourly")
    assert rows == [(pseudonym("patient", "patient-001", KEY), T0, 3, 90.0, 99.0, pytest.approx(93.6667, abs=1e-3), 92.0)]


def test_pseudonyms_depend_on_the_key():
    assert pseudonym("patient", "patient-001", "key-1") != pseudonym("patient", "patient-001", "key-2")
    assert pseudonym("patient", "patient-001", "key-1") == pseudonym("patient", "patient-001", "key-1")


def test_analytics_exposes_no_direct_identifiers(fresh_database_url):
    columns = {row[0] for row in fetch(fresh_database_url, """
        SELECT a.attname FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'analytics' AND a.attnum > 0 AND NOT a.attisdropped""")}
    assert columns, "analytics has no columns at all"
    assert not columns & {"patient_id", "device_id", "birth_date", "care_team", "raw_file", "original_text", "evidence", "lineage"}


def test_every_analytics_view_has_a_comment(fresh_database_url):
    rows = fetch(fresh_database_url, """
        SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'analytics' AND c.relkind IN ('v', 'm')""")
    assert {name for name, _ in rows} >= set(LIGHT_VIEWS + HEAVY_VIEWS) | {"device_health", "active_alerts", "patients_critical"}
    assert [name for name, comment in rows if not comment or "One row per" not in comment] == []


def test_every_materialized_view_has_a_unique_index_on_plain_columns(fresh_database_url):
    rows = fetch(fresh_database_url, """
        SELECT m.matviewname, bool_or(i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL)
        FROM pg_matviews AS m
        LEFT JOIN pg_index AS i ON i.indrelid = (quote_ident(m.schemaname) || '.' || quote_ident(m.matviewname))::regclass
        WHERE m.schemaname = 'analytics' GROUP BY 1""")
    assert len(rows) == 3 and all(ok for _, ok in rows)


def test_per_minute_refresh_leaves_the_heavy_views_to_maintenance(registered_url):
    load_hour(registered_url)
    result = refresh_views(registered_url, pseudonym_key=KEY)
    assert set(result["views"]) == set(LIGHT_VIEWS)
    assert fetch(registered_url, "SELECT count(*) FROM analytics.vitals_hourly") == [(0,)]
    assert fetch(registered_url, "SELECT count(*) FROM analytics.device_health WHERE last_reading_at IS NOT NULL") == [(1,)]


def test_refresh_is_concurrent_readers_are_not_blocked(registered_url):
    load_hour(registered_url)
    refresh_views(registered_url, heavy=True, pseudonym_key=KEY)
    load_hour(registered_url, patient="patient-002", device="device-002")
    with psycopg.connect(registered_url) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM analytics.vitals_hourly").fetchone()  # holds its lock until the end of the transaction
        with psycopg.connect(registered_url, autocommit=True) as refresher:
            refresher.execute("SET lock_timeout = '3s'")
            refresher.execute("SELECT kidjamo.refresh_analytics_view('vitals_hourly')")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                refresher.execute("REFRESH MATERIALIZED VIEW analytics.vitals_hourly")  # the non-concurrent kind would wait
        reader.execute("ROLLBACK")
    assert fetch(registered_url, "SELECT count(*) FROM analytics.vitals_hourly") == [(2,)]


def test_two_refreshes_at_once_both_succeed(registered_url):
    load_hour(registered_url)
    errors = []

    def refresh():
        try:
            refresh_views(registered_url, heavy=True, pseudonym_key=KEY)
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_device_health_is_current_after_each_load_without_a_refresh(registered_url):
    refresh_views(registered_url, pseudonym_key=KEY)  # pseudonyms only: no reading loaded yet
    assert fetch(registered_url, "SELECT count(*) FROM analytics.device_health WHERE last_reading_at IS NOT NULL") == [(0,)]
    load_hour(registered_url, spo2_values=(90.0, 92.0))
    assert fetch(registered_url, "SELECT last_reading_at FROM analytics.device_health WHERE last_reading_at IS NOT NULL") \
        == [(T0 + timedelta(seconds=30),)]
    load_hour(registered_url, spo2_values=(90.0, 92.0, 99.0))
    assert fetch(registered_url, "SELECT last_reading_at FROM analytics.device_health WHERE last_reading_at IS NOT NULL") \
        == [(T0 + timedelta(minutes=1),)]


def test_device_health_reports_battery_signal_and_silent_time(registered_url):
    load_hour(registered_url)
    refresh_views(registered_url, pseudonym_key=KEY)
    rows = fetch(registered_url, """SELECT device_key, battery_level, signal_quality, silent_seconds >= extract(epoch FROM now() - %s::timestamptz) - 5
                                    FROM analytics.device_health WHERE last_reading_at IS NOT NULL""", (T0 + timedelta(minutes=1),))
    assert rows == [(pseudonym("device", "device-001", KEY), 78.0, 95.0, True)]
    assert fetch(registered_url, "SELECT count(*) FROM analytics.device_health") == [(4,)]


def test_patient_daily_counts_readings_completeness_and_time_per_severity(registered_url):
    load_hour(registered_url)
    insert_alert(registered_url, "patient-001", severity="critical", first_reading_at=T0, last_reading_at=T0 + timedelta(minutes=10))
    insert_alert(registered_url, "patient-001", severity="critical", rule_id="hr_high",
                 first_reading_at=T0 + timedelta(minutes=5), last_reading_at=T0 + timedelta(minutes=20))
    insert_alert(registered_url, "patient-001", severity="warning", rule_id="temp", status="resolved",
                 first_reading_at=datetime(2026, 11, 27, 23, 59, tzinfo=timezone.utc),
                 last_reading_at=datetime(2026, 11, 28, 0, 1, tzinfo=timezone.utc))
    refresh_views(registered_url, heavy=True, pseudonym_key=KEY)
    rows = fetch(registered_url, """SELECT day::text, readings, completeness::float, critical_alert_seconds, warning_alert_seconds
                                    FROM analytics.patient_daily ORDER BY day""")
    # overlapping critical episodes merge: 15:00 to 15:20:30; the warning spans midnight: 60 s + 90 s
    assert rows == [("2026-11-27", 3, pytest.approx(3 / 2880, abs=1e-4), 20 * 60 + 30, 60), ("2026-11-28", 0, 0.0, 0, 90)]


def test_data_quality_daily_counts_quarantine_reasons_and_gate_results(registered_url):
    arrival = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
    from kidjamo.lake.schema import QUARANTINE

    quarantine = pa.Table.from_pydict({
        "layer": ["bronze", "bronze", "silver"], "reason": ["out_of_range", "out_of_range", "duplicate"],
        "field": [None] * 3, "detail": ["d"] * 3, "device_id": [None] * 3, "measured_at": [None] * 3,
        "original_text": ["{}"] * 3, "raw_file": ["raw/f.json"] * 3, "record_index": [0, 1, 2],
        "record_hash": [None] * 3, "arrival_minute": [arrival] * 3, "run_id": ["run-1"] * 3}, schema=QUARANTINE)
    load_quarantine(registered_url, quarantine, "run-1")
    with psycopg.connect(registered_url) as connection:
        for run, success in (("run-1", True), ("run-2", False)):
            connection.execute(
                "INSERT INTO kidjamo.data_quality_results (run_id, suite, interval_start, interval_end, success, evaluated, failed_rows)"
                " VALUES (%s, 'bronze', %s, %s, %s, 100, %s)", (run, arrival, arrival + timedelta(minutes=1), success, 0 if success else 7))
    refresh_views(registered_url, pseudonym_key=KEY)
    rows = fetch(registered_url, """SELECT check_kind, layer, check_name, validations, failed_validations, evaluated_rows, failed_rows
                                    FROM analytics.data_quality_daily WHERE day = '2026-11-27' ORDER BY 1, 2, 3""")
    assert rows == [("gate", "bronze", "bronze", 2, 1, 200, 7),
                    ("quarantine", "bronze", "out_of_range", None, None, None, 2),
                    ("quarantine", "silver", "duplicate", None, None, None, 1)]


def test_active_alerts_and_patients_critical_are_live_views(registered_url):
    refresh_views(registered_url, pseudonym_key=KEY)
    insert_alert(registered_url, "patient-001", first_reading_at=T0, last_reading_at=T0)
    insert_alert(registered_url, "patient-002", severity="high", first_reading_at=T0, last_reading_at=T0)
    insert_alert(registered_url, "patient-003", status="resolved", first_reading_at=T0, last_reading_at=T0)
    assert fetch(registered_url, "SELECT count(*) FROM analytics.active_alerts") == [(2,)]
    assert fetch(registered_url, "SELECT patient_key, critical_alerts, rule_ids FROM analytics.patients_critical") == [
        (pseudonym("patient", "patient-001", KEY), 1, ["spo2_low"])]
