"""Alert lifecycle in PostgreSQL: one open alert per patient and rule, escalation, auto-resolution, idempotency."""

from datetime import timedelta

from tests.alerts.conftest import alerts, count, load_measurements, query
from tests.clinical.readings import T0, frame, reading, series
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules

RULES = default_rules()


def run(url, rows, minute, settings, run_id="run"):
    start = T0 + timedelta(minutes=minute)
    return raise_alerts(url, frame(rows), interval_start=start, interval_end=start + timedelta(minutes=1),
                        run_id=run_id, settings=settings, rules=RULES)


def p1(**values):
    return reading(patient_id="p1", device_id="d1", **values)


def test_a_matching_reading_opens_one_alert_with_evidence_and_lineage(alerts_db, log_settings):
    result = run(alerts_db, [p1(temperature=38.9, index=3)], 0, log_settings)
    assert result["opened"] == 1
    (alert,) = alerts(alerts_db)
    assert (alert["rule_id"], alert["rule_version"], alert["severity"], alert["status"]) == ("fever", "2", "critical", "open")
    assert alert["evidence"]["values"] == {"temperature": 38.9}
    assert alert["evidence"]["thresholds"] == {"temperature_at_least": 38.5}
    assert alert["lineage"][0]["raw_file"] == "raw/vitals/f.json" and alert["lineage"][0]["record_index"] == 3
    assert alert["reading_count"] == 1
    assert query(alerts_db, "SELECT event_type FROM kidjamo.alert_events") == [{"event_type": "opened"}]


def test_new_matching_readings_update_the_open_alert(alerts_db, log_settings):
    run(alerts_db, [p1(temperature=38.9)], 0, log_settings)
    result = run(alerts_db, [p1(temperature=39.2, at=T0 + timedelta(minutes=1, seconds=10), index=1)], 1, log_settings)
    assert result["updated"] == 1 and result["opened"] == 0
    (alert,) = alerts(alerts_db)
    assert alert["reading_count"] == 2
    assert alert["last_reading_at"] == T0 + timedelta(minutes=1, seconds=10)
    assert count(alerts_db, "alert_events") == 1


def test_rerunning_the_same_interval_changes_nothing_and_queues_nothing(alerts_db, log_settings):
    rows = [p1(temperature=38.9, spo2=93.0)]
    run(alerts_db, rows, 0, log_settings)
    before = (alerts(alerts_db), count(alerts_db, "alert_events"), count(alerts_db, "notifications"))
    result = run(alerts_db, rows, 0, log_settings, run_id="retry")
    assert result["opened"] == result["updated"] == result["escalated"] == 0
    assert (alerts(alerts_db), count(alerts_db, "alert_events"), count(alerts_db, "notifications")) == before


def test_a_higher_severity_escalates_the_alert_with_an_event_and_reopens_it(alerts_db, log_settings):
    run(alerts_db, [p1(age=30.0, respiratory_rate=22.0)], 0, log_settings)  # NEWS2 21-24: high
    query(alerts_db, "UPDATE kidjamo.alerts SET status = 'acknowledged' RETURNING alert_id")
    result = run(alerts_db, [p1(respiratory_rate=31.0, at=T0 + timedelta(minutes=1))], 1, log_settings)
    assert result["escalated"] >= 1
    tachypnoea = next(a for a in alerts(alerts_db) if a["rule_id"] == "tachypnoea")
    assert tachypnoea["severity"] == "critical" and tachypnoea["status"] == "open"
    events = query(alerts_db, "SELECT event_type, severity, details FROM kidjamo.alert_events WHERE alert_id = %s"
                   " ORDER BY event_id", (tachypnoea["alert_id"],))
    assert [(e["event_type"], e["severity"]) for e in events] == [("opened", "high"), ("escalated", "critical")]
    assert events[1]["details"]["from"] == "high"


def test_a_lower_severity_does_not_downgrade_the_alert(alerts_db, log_settings):
    run(alerts_db, [p1(respiratory_rate=31.0)], 0, log_settings)
    run(alerts_db, [p1(respiratory_rate=22.0, at=T0 + timedelta(minutes=1))], 1, log_settings)
    tachypnoea = next(a for a in alerts(alerts_db) if a["rule_id"] == "tachypnoea")
    assert tachypnoea["severity"] == "critical" and tachypnoea["reading_count"] == 2


def test_a_normal_reading_then_the_quiet_period_resolves_its_alert(alerts_db, log_settings):
    settings = log_settings.model_copy(update={"alert_quiet_minutes": 10})
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, settings)
    run(alerts_db, [p1(at=T0 + timedelta(minutes=5))], 5, settings)
    assert alerts(alerts_db)[0]["status"] == "open"
    result = run(alerts_db, [p1(at=T0 + timedelta(minutes=10, seconds=30))], 10, settings)
    assert result["resolved"] == 1
    (alert,) = alerts(alerts_db)
    assert alert["status"] == "resolved" and alert["resolved_by"] == "pipeline"
    assert alert["resolution"].startswith("normal reading at 2026-11-27T10:10:30Z")
    # The rule matching again opens a new episode.
    assert run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0, at=T0 + timedelta(minutes=11))], 11, settings)["opened"] == 1


def test_no_new_readings_from_the_patient_keeps_the_alert_open(alerts_db, log_settings):
    settings = log_settings.model_copy(update={"alert_quiet_minutes": 10})
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, settings)
    assert run(alerts_db, [], 30, settings)["resolved"] == 0


def test_readings_of_a_resolved_episode_do_not_reopen_it_when_rerun(alerts_db, log_settings):
    settings = log_settings.model_copy(update={"alert_quiet_minutes": 10})
    first = [p1(spo2=93.0, spo2_baseline=95.0)]
    run(alerts_db, first, 0, settings)
    assert run(alerts_db, [p1(at=T0 + timedelta(minutes=11))], 11, settings)["resolved"] == 1
    assert run(alerts_db, first, 0, settings, run_id="backfill")["opened"] == 0
    assert len(alerts(alerts_db)) == 1


def test_late_readings_raise_alerts_marked_late_with_their_delay(alerts_db, log_settings):
    late = p1(spo2=88.0, at=T0 - timedelta(hours=3), is_late=True, delay_seconds=3 * 3600 + 30.0)
    run(alerts_db, [late], 0, log_settings)
    severe = next(a for a in alerts(alerts_db) if a["rule_id"] == "hypoxia_severe")
    assert severe["is_late"] and severe["delay_seconds"] == 3 * 3600 + 30.0
    assert severe["evidence"]["is_late"]


def test_a_superseded_rule_does_not_open_its_own_alert(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=88.0)], 0, log_settings)
    assert {a["rule_id"] for a in alerts(alerts_db)} == {"hypoxia_severe", "spo2_drop", "news2"}


def test_a_superseded_rule_keeps_updating_its_open_alert(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=93.0)], 0, log_settings)
    run(alerts_db, [p1(spo2=88.0, at=T0 + timedelta(minutes=1))], 1, log_settings)
    hypoxia = next(a for a in alerts(alerts_db) if a["rule_id"] == "hypoxia")
    assert hypoxia["reading_count"] == 2 and hypoxia["status"] == "open"


def test_readings_of_unregistered_patients_are_counted_not_failed(alerts_db, log_settings):
    result = run(alerts_db, [reading(patient_id="stranger", device_id="dx", temperature=39.0)], 0, log_settings)
    assert result["unknown_patient"] >= 1 and alerts(alerts_db) == []


def test_a_silent_active_device_raises_sensor_silent_then_resolves_when_it_reports(alerts_db, log_settings):
    run(alerts_db, [p1()], 0, log_settings)
    assert run(alerts_db, [], 4, log_settings)["silent_devices"] == 0  # silent exactly 5 minutes at T0 + 5
    result = run(alerts_db, [], 5, log_settings)  # 6 minutes at the end of the interval
    assert result["opened"] == 1
    (alert,) = alerts(alerts_db)
    assert (alert["rule_id"], alert["severity"]) == ("sensor_silent", "warning")
    assert run(alerts_db, [], 6, log_settings)["opened"] == 0  # still the same silence: no new alert
    assert len(alerts(alerts_db)) == 1
    run(alerts_db, [p1(at=T0 + timedelta(minutes=7))], 7, log_settings)
    assert alerts(alerts_db)[0]["status"] == "resolved"


def test_sensor_silent_is_high_when_the_patient_has_an_open_critical_alert(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=84.0)], 0, log_settings)
    run(alerts_db, [], 6, log_settings)
    silent = next(a for a in alerts(alerts_db) if a["rule_id"] == "sensor_silent")
    assert silent["severity"] == "high"


def test_an_inactive_device_is_never_silent(alerts_db, log_settings):
    run(alerts_db, [p1()], 0, log_settings)
    query(alerts_db, "UPDATE kidjamo.devices SET active = false WHERE device_id = 'd1' RETURNING device_id")
    assert run(alerts_db, [], 10, log_settings)["silent_devices"] == 0


def test_pain_across_minute_batches_raises_pain_severe_once(alerts_db, log_settings):
    rows = series(4, pain_scale=8, patient_id="p1", device_id="d1")
    load_measurements(alerts_db, rows[:2])
    run(alerts_db, rows[:2], 0, log_settings)
    assert "pain_severe" not in {a["rule_id"] for a in alerts(alerts_db)}
    load_measurements(alerts_db, rows[2:])
    run(alerts_db, rows[2:], 1, log_settings)
    (pain,) = [a for a in alerts(alerts_db) if a["rule_id"] == "pain_severe"]
    assert pain["severity"] == "high" and pain["reading_count"] == 2


def test_a_flatline_spanning_minute_batches_is_seen_through_the_stored_history(alerts_db, log_settings):
    rows = series(11, spo2=97.0, patient_id="p1", device_id="d1")
    for i, row in enumerate(rows):
        row["heart_rate"] += i % 3  # only SpO2 is stuck
    batches = [rows[:4], rows[4:8], rows[8:]]
    for minute, batch in enumerate(batches):
        load_measurements(alerts_db, batch)
        run(alerts_db, batch, minute, log_settings)
    (flatline,) = [a for a in alerts(alerts_db) if a["rule_id"] == "sensor_flatline"]
    assert flatline["severity"] == "warning" and flatline["first_reading_at"] == rows[10]["measured_at"]
