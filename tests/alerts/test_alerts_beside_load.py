"""The alert step runs beside the warehouse load (kidjamo_vitals): it needs only what earlier minutes loaded."""

from datetime import timedelta

from tests.alerts.conftest import alerts, load_measurements
from tests.clinical.readings import T0, frame, series
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules

RULES = default_rules()


def _run(url, rows, minute, settings):
    start = T0 + timedelta(minutes=minute)
    return raise_alerts(url, frame(rows), interval_start=start, interval_end=start + timedelta(minutes=1),
                        run_id=f"run-{minute}", settings=settings, rules=RULES)


def test_a_flatline_spanning_batches_is_found_when_each_batch_is_loaded_after_its_alerts(alerts_db, log_settings):
    rows = series(11, spo2=97.0, patient_id="p1", device_id="d1")
    for i, row in enumerate(rows):
        row["heart_rate"] += i % 3  # only SpO2 is stuck
    for minute, batch in enumerate([rows[:4], rows[4:8], rows[8:]]):
        _run(alerts_db, batch, minute, log_settings)
        load_measurements(alerts_db, batch)
    (flatline,) = [a for a in alerts(alerts_db) if a["rule_id"] == "sensor_flatline"]
    assert flatline["severity"] == "warning" and flatline["first_reading_at"] == rows[10]["measured_at"]


def test_severe_pain_across_batches_is_found_when_each_batch_is_loaded_after_its_alerts(alerts_db, log_settings):
    rows = series(4, pain_scale=8, patient_id="p1", device_id="d1")
    _run(alerts_db, rows[:2], 0, log_settings)
    load_measurements(alerts_db, rows[:2])
    _run(alerts_db, rows[2:], 1, log_settings)
    (pain,) = [a for a in alerts(alerts_db) if a["rule_id"] == "pain_severe"]
    assert pain["severity"] == "high" and pain["reading_count"] == 2
