"""Doubtful readings are qualified, never suppressed: low-confidence SpO2, a weak signal and activity
go into the alert's evidence and the notification's text."""

from datetime import timedelta

from tests.clinical.readings import T0, frame, reading
from transforms.alerts.delivery import notification_document
from transforms.alerts.evaluate import evaluate_rules
from transforms.clinical.rules import default_rules

RULES = default_rules()


def candidates(**values):
    rows = [reading(**values)]
    found = evaluate_rules(frame(rows), None, as_of=T0 + timedelta(minutes=1), rules=RULES)
    return found.set_index("rule_id")


def document(evidence: dict, event_type: str = "opened") -> dict:
    row = {"event_id": 1, "event_key": "1:opened", "event_type": event_type, "audience": "care_team", "event_at": T0,
           "alert_id": 1, "patient_id": "p1", "patient_pseudonym": "ps-1", "care_team": "team-a", "rule_id": evidence["rule"]["id"],
           "rule_version": "1", "severity": "critical", "status": "open", "first_reading_at": T0, "last_reading_at": T0,
           "reading_count": 1, "is_late": False, "delay_seconds": 30.0, "evidence": evidence, "details": {}}
    return notification_document(row)


def test_a_low_confidence_spo2_with_a_weak_signal_still_alerts_and_says_so():
    found = candidates(spo2=65.0, spo2_low_confidence=True, weak_signal=True, signal_quality=30.0)
    evidence = found.loc["hypoxia_emergency", "evidence"]
    assert found.loc["hypoxia_emergency", "severity"] == "critical"
    assert evidence["qualifiers"] == ["SpO2 below 70 %: outside the oximeter's specified accuracy (low confidence)",
                                      "weak sensor signal (quality 30 %)"]


def test_activity_qualifies_a_fast_heart_rate():
    evidence = candidates(age=8.0, heart_rate=135.0, activity_level=8).loc["heart_rate", "evidence"]
    assert evidence["qualifiers"] == ["patient active (activity 8/10)"]


def test_a_plain_reading_has_no_qualifier():
    assert candidates(spo2=88.0).loc["hypoxia_severe", "evidence"]["qualifiers"] == []


def test_heat_exposure_without_humidity_says_the_heat_index_is_unknown():
    evidence = candidates(ambient_temp=40.0).loc["heat_exposure", "evidence"]
    assert evidence["qualifiers"] == ["heat index unknown (no humidity measured): judged on the ambient temperature"]


def test_the_notification_text_carries_the_values_and_the_qualifiers():
    found = candidates(spo2=65.0, spo2_low_confidence=True, activity_level=7)
    sent = document(found.loc["hypoxia_emergency", "evidence"])
    assert sent["text"] == ("Oxygen saturation emergency (opened): spo2 65.0. Note: SpO2 below 70 %: outside the"
                            " oximeter's specified accuracy (low confidence); patient active (activity 7/10)")
    assert sent["qualifiers"] == found.loc["hypoxia_emergency", "evidence"]["qualifiers"]
