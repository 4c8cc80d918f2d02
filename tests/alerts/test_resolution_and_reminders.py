"""No alert silences itself: resolution needs a normal reading, critical and fever alerts wait for a
clinician, resolutions are notified, high alerts escalate, acknowledged alerts that persist remind."""

from datetime import timedelta

from tests.alerts.conftest import alerts, query
from tests.clinical.readings import T0, frame, reading
from transforms.alerts.escalation import escalate
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules

RULES = default_rules()

QUIET = 10  # minutes


def run(url, rows, minute, settings, run_id="run"):
    start = T0 + timedelta(minutes=minute)
    return raise_alerts(url, frame(rows), interval_start=start, interval_end=start + timedelta(minutes=1),
                        run_id=run_id, settings=settings, rules=RULES)


def p1(minute: float = 0, **values):
    return reading(patient_id="p1", device_id="d1", at=T0 + timedelta(minutes=minute), **values)


def quiet(log_settings):
    return log_settings.model_copy(update={"alert_quiet_minutes": QUIET})


def alert(url, rule_id):
    return next(a for a in alerts(url) if a["rule_id"] == rule_id)


def acknowledge(url, rule_id, minute):
    query(url, "UPDATE kidjamo.alerts SET status = 'acknowledged', acknowledged_at = %s, acknowledged_by = 'dr-a'"
               " WHERE rule_id = %s RETURNING alert_id", (T0 + timedelta(minutes=minute), rule_id))


def test_an_unacknowledged_critical_alert_never_resolves_itself(alerts_db, log_settings):
    settings = quiet(log_settings)
    run(alerts_db, [p1(spo2=88.0)], 0, settings)
    for minute in (5, 20, 60):
        run(alerts_db, [p1(minute)], minute, settings)
    assert alert(alerts_db, "hypoxia_severe")["status"] == "open"


def test_an_acknowledged_critical_alert_resolves_after_a_normal_reading(alerts_db, log_settings):
    settings = quiet(log_settings)
    run(alerts_db, [p1(spo2=88.0)], 0, settings)
    acknowledge(alerts_db, "hypoxia_severe", 2)
    run(alerts_db, [p1(12)], 12, settings)
    assert alert(alerts_db, "hypoxia_severe")["status"] == "resolved"


def test_a_fever_alert_is_never_resolved_by_the_pipeline(alerts_db, log_settings):
    settings = quiet(log_settings)
    run(alerts_db, [p1(temperature=38.2, age=8.0)], 0, settings)  # fever_onset, high
    run(alerts_db, [p1(temperature=38.6)], 1, settings)  # fever, critical
    acknowledge(alerts_db, "fever", 2)
    acknowledge(alerts_db, "fever_onset", 2)
    for minute in (15, 40, 120):
        run(alerts_db, [p1(minute, temperature=36.8)], minute, settings)
    assert {a["rule_id"]: a["status"] for a in alerts(alerts_db)} == {"fever_onset": "acknowledged", "fever": "acknowledged"}


def test_readings_without_the_firing_parameter_do_not_resolve_the_alert(alerts_db, log_settings):
    settings = quiet(log_settings)
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, settings)
    for minute in (5, 15, 30):
        run(alerts_db, [p1(minute, spo2=None)], minute, settings)  # the patient's sensor reports, SpO2 does not
    assert alert(alerts_db, "hypoxia")["status"] == "open"
    run(alerts_db, [p1(31, spo2=97.0)], 31, settings)
    assert alert(alerts_db, "hypoxia")["status"] == "resolved"


def test_a_matching_reading_after_the_normal_one_keeps_the_alert_open(alerts_db, log_settings):
    settings = quiet(log_settings)
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, settings)
    run(alerts_db, [p1(3, spo2=97.0), p1(3.5, spo2=93.5, spo2_baseline=95.0)], 3, settings)
    run(alerts_db, [p1(15, spo2=None)], 15, settings)
    assert alert(alerts_db, "hypoxia")["status"] == "open"


def test_a_resolution_is_an_event_that_is_notified(alerts_db, log_settings):
    settings = quiet(log_settings)
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, settings)
    run(alerts_db, [p1(11)], 11, settings)
    hypoxia = alert(alerts_db, "hypoxia")
    notified = query(alerts_db, "SELECT e.event_type, n.channel FROM kidjamo.notifications AS n"
                                " JOIN kidjamo.alert_events AS e USING (event_id) WHERE e.alert_id = %s ORDER BY e.event_id",
                     (hypoxia["alert_id"],))
    assert [row["event_type"] for row in notified] == ["opened", "resolved"]


def test_a_late_episode_is_not_opened_and_resolved_in_the_same_run(alerts_db, log_settings):
    settings = quiet(log_settings)
    hours_ago = -180
    late = [p1(hours_ago, spo2=93.0, spo2_baseline=95.0, is_late=True, delay_seconds=3 * 3600.0),
            p1(hours_ago + 20, is_late=True, delay_seconds=2.6 * 3600.0)]
    result = run(alerts_db, late, 0, settings)
    assert result["opened"] >= 1 and result["resolved"] == 0
    assert alert(alerts_db, "hypoxia")["status"] == "open"
    assert run(alerts_db, [], QUIET, settings)["resolved"] == 1  # seen for the quiet period, then resolved


def test_an_unacknowledged_high_alert_escalates_on_its_own_schedule(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, log_settings)
    opened = T0 + timedelta(minutes=1)
    assert escalate(alerts_db, as_of=opened + timedelta(minutes=14), settings=log_settings, rules=RULES)["escalation"] == 0
    assert escalate(alerts_db, as_of=opened + timedelta(minutes=15), settings=log_settings, rules=RULES)["escalation"] == 1
    assert escalate(alerts_db, as_of=opened + timedelta(minutes=16), settings=log_settings, rules=RULES)["escalation"] == 0
    assert escalate(alerts_db, as_of=opened + timedelta(minutes=60), settings=log_settings, rules=RULES)["second_tier"] == 1


def test_a_warning_does_not_escalate(alerts_db, log_settings):
    run(alerts_db, [p1(ambient_temp=33.0)], 0, log_settings)
    counts = escalate(alerts_db, as_of=T0 + timedelta(hours=5), settings=log_settings, rules=RULES)
    assert counts["escalation"] == counts["second_tier"] == 0


def test_an_acknowledged_alert_whose_rule_persists_is_notified_again_each_hour(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, log_settings)
    acknowledge(alerts_db, "hypoxia", 2)
    run(alerts_db, [p1(61.5, spo2=93.0, spo2_baseline=95.0)], 61, log_settings)
    assert escalate(alerts_db, as_of=T0 + timedelta(minutes=61), settings=log_settings, rules=RULES)["renotified"] == 0
    assert escalate(alerts_db, as_of=T0 + timedelta(minutes=62), settings=log_settings, rules=RULES)["renotified"] == 1
    assert escalate(alerts_db, as_of=T0 + timedelta(minutes=63), settings=log_settings, rules=RULES)["renotified"] == 0
    events = query(alerts_db, "SELECT event_type, audience, details FROM kidjamo.alert_events WHERE event_type = 'renotified'")
    assert [(e["event_type"], e["audience"]) for e in events] == [("renotified", "care_team")]
    assert events[0]["details"]["acknowledged_by"] == "dr-a"


def test_an_acknowledged_alert_that_stopped_matching_is_not_notified_again(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, log_settings)
    acknowledge(alerts_db, "hypoxia", 2)
    run(alerts_db, [p1(30, spo2=98.0)], 30, log_settings)
    assert escalate(alerts_db, as_of=T0 + timedelta(minutes=62), settings=log_settings, rules=RULES)["renotified"] == 0


def test_the_reminder_period_is_configurable_in_the_rule_file(alerts_db, log_settings):
    rules = RULES.model_copy(update={"escalation": RULES.escalation.model_copy(update={"acknowledged_renotify_minutes": 20})})
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, log_settings)
    acknowledge(alerts_db, "hypoxia", 2)
    run(alerts_db, [p1(21, spo2=93.0, spo2_baseline=95.0)], 21, log_settings)
    assert escalate(alerts_db, as_of=T0 + timedelta(minutes=22), rules=rules, settings=log_settings)["renotified"] == 1


def test_sensor_silent_is_high_when_the_patient_has_an_open_high_alert(alerts_db, log_settings):
    run(alerts_db, [p1(spo2=93.0, spo2_baseline=95.0)], 0, log_settings)
    run(alerts_db, [], 6, log_settings)
    assert alert(alerts_db, "sensor_silent")["severity"] == "high"


def test_sensor_silent_stays_a_warning_with_only_a_warning_open(alerts_db, log_settings):
    run(alerts_db, [p1(ambient_temp=33.0)], 0, log_settings)
    run(alerts_db, [], 6, log_settings)
    assert alert(alerts_db, "sensor_silent")["severity"] == "warning"
