"""The FHIR mapping and its checks, on hand-made rows: codes, units, absent values, flags, and what the checks refuse."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pandas as pd
import pytest

from transforms.fhir import resources as fhir
from transforms.fhir.profile import InvalidResource, check_resource, resource_problems

MEASURED = pd.Timestamp("2026-11-27T15:30:30Z")


def _silver(**vitals) -> pd.DataFrame:
    row = {"device_id": "device-1", "patient_id": "patient-1", "measured_at": MEASURED, "spo2": 94.2, "heart_rate": 85.0,
           "temperature": 37.1, "respiratory_rate": 18.0, "pain_scale": 2, "spo2_low_confidence": False, **vitals}
    return pd.DataFrame([row])


def _by_code(observations: list[dict]) -> dict[str, dict]:
    return {observation["code"]["coding"][0]["code"]: observation for observation in observations}


def test_a_reading_becomes_five_vital_sign_observations_with_loinc_codes_and_ucum_units():
    observations = _by_code(fhir.reading_observations(_silver()))
    expected = {"59408-5": (94.2, "%"), "8867-4": (85.0, "/min"), "8310-5": (37.1, "Cel"), "9279-1": (18.0, "/min"),
                "72514-3": (2, "{score}")}
    assert {code: (o["valueQuantity"]["value"], o["valueQuantity"]["code"]) for code, o in observations.items()} == expected
    assert [c["code"] for c in observations["59408-5"]["code"]["coding"]] == ["59408-5", "2708-6"]
    for observation in observations.values():
        check_resource(observation)
        assert observation["effectiveDateTime"] == "2026-11-27T15:30:30Z"
        assert observation["subject"]["reference"] == "Patient/patient-1"
        assert observation["device"]["reference"] == "Device/device-1"
        assert observation["category"][0]["coding"][0]["code"] == "vital-signs"


def test_a_vital_the_device_did_not_send_has_a_data_absent_reason_instead_of_a_value():
    observation = _by_code(fhir.reading_observations(_silver(respiratory_rate=float("nan"))))["9279-1"]
    assert "valueQuantity" not in observation
    assert observation["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    check_resource(observation)


def test_a_quarantined_reading_is_exported_as_absent_with_the_error_reason_and_why():
    quarantine = pd.DataFrame([{"device_id": "device-1", "patient_id": "patient-1", "measured_at": MEASURED,
                                "reason": "out_of_range", "detail": "vitals.spo2: 120 is outside the plausible range 50 to 100"}])
    observations = fhir.quarantined_reading_observations(quarantine)
    assert len(observations) == len(fhir.VITAL_SIGNS)
    for observation in observations:
        check_resource(observation)
        assert observation["dataAbsentReason"]["coding"][0]["code"] == "error"
        assert "out_of_range" in observation["note"][0]["text"]
    # Same id as the reading would have had: a receiving server sees one Observation per vital and instant.
    assert {o["id"] for o in observations} == {o["id"] for o in fhir.reading_observations(_silver())}


def test_minute_aggregates_merge_late_arrivals_and_carry_the_period_and_statistic():
    minute = pd.Timestamp("2026-11-27T15:30:00Z")
    gold = pd.DataFrame([
        {"patient_id": "patient-1", "minute": minute, "readings": 1, "spo2_min": 95.0, "heart_rate_mean": 80.0,
         "temperature_max": 37.0, "respiratory_rate_max": 18.0, "pain_max": 1},
        {"patient_id": "patient-1", "minute": minute, "readings": 3, "spo2_min": 91.0, "heart_rate_mean": 100.0,
         "temperature_max": 36.5, "respiratory_rate_max": 22.0, "pain_max": 0},
    ])
    observations = _by_code(fhir.minute_observations(fhir.merge_minutes(gold)))
    assert observations["59408-5"]["valueQuantity"]["value"] == 91.0
    assert observations["8867-4"]["valueQuantity"]["value"] == 95.0  # (80 * 1 + 100 * 3) / 4
    assert observations["8310-5"]["valueQuantity"]["value"] == 37.0
    heart_rate = observations["8867-4"]
    assert heart_rate["effectivePeriod"] == {"start": "2026-11-27T15:30:00Z", "end": "2026-11-27T15:31:00Z"}
    extensions = {e["url"]: e for e in heart_rate["extension"]}
    assert extensions[fhir.STATISTIC_EXTENSION]["valueCodeableConcept"]["coding"][0]["code"] == "average"
    assert extensions[fhir.READINGS_EXTENSION]["valueInteger"] == 4
    for observation in observations.values():
        check_resource(observation)


def test_resource_ids_are_stable_across_exports():
    assert [o["id"] for o in fhir.reading_observations(_silver())] == [o["id"] for o in fhir.reading_observations(_silver())]
    assert fhir.fhir_id("patient-123") == "patient-123"
    assert fhir.fhir_id("Patient 123/é") == fhir.fhir_id("Patient 123/é") != "Patient 123/é"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda o: o["valueQuantity"].update(code="[degF]", unit="degF"), "valueQuantity.code"),
        (lambda o: o.pop("subject"), "subject"),
        (lambda o: o.update(category=[{"coding": [{"system": fhir.OBSERVATION_CATEGORY, "code": "laboratory"}]}]), "category"),
        (lambda o: o.update(code={"coding": [{"system": fhir.LOINC, "code": "1234-5"}]}), "code"),
        (lambda o: o.update(effectiveDateTime="2026-11-27T15:30:30"), "effective"),
        (lambda o: o.pop("effectiveDateTime"), "effective"),
        (lambda o: o.update(dataAbsentReason={"coding": [{"system": fhir.DATA_ABSENT_REASON, "code": "error"}]}), "only one"),
        (lambda o: o.pop("valueQuantity"), "value[x]"),
        (lambda o: o.update(status="bogus"), "status"),
        (lambda o: o["valueQuantity"].update(system="http://example.org/units"), "UCUM"),
    ],
)
def test_the_vital_signs_checks_refuse_an_observation_that_breaks_the_profile(change, problem):
    observation = copy.deepcopy(_by_code(fhir.reading_observations(_silver()))["8310-5"])
    change(observation)
    problems = resource_problems(observation)
    assert any(problem in text for text in problems), problems
    with pytest.raises(InvalidResource, match="Observation/"):
        check_resource(observation)


def test_the_r4b_model_refuses_a_malformed_resource():
    observation = _by_code(fhir.reading_observations(_silver()))["8867-4"]
    assert resource_problems({**observation, "id": "not a valid id!"})
    assert resource_problems({**observation, "valueQuantity": {"value": "eighty"}})


def _alert(**changes) -> dict:
    return {"alert_id": 42, "patient_id": "patient-1", "rule_id": "hypoxia_emergency", "rule_version": "1",
            "severity": "critical", "status": "open", "first_reading_at": datetime(2026, 11, 27, 15, 30, 30, tzinfo=timezone.utc),
            "resolved_at": None, "evidence": {"values": {"spo2": 82.1}, "thresholds": {"spo2_below": 85}}, **changes}


def test_an_open_alert_is_an_active_flag_with_rule_severity_and_evidence():
    flag = fhir.alert_flag(_alert(), [{"device_id": "device-1", "measured_at": MEASURED}])
    check_resource(flag)
    assert flag["status"] == "active"
    assert flag["code"]["coding"][0] == {"system": fhir.ALERT_RULE_SYSTEM, "version": "1", "code": "hypoxia_emergency"}
    extensions = {}
    for extension in flag["extension"]:
        extensions.setdefault(extension["url"], []).append(extension)
    assert extensions[fhir.SEVERITY_EXTENSION][0]["valueCoding"]["code"] == "critical"
    assert extensions[fhir.FLAG_PRIORITY_EXTENSION][0]["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    assert '"spo2": 82.1' in extensions[fhir.EVIDENCE_EXTENSION][0]["valueString"]
    spo2 = next(v for v in fhir.VITAL_SIGNS if v.column == "spo2")
    assert [e["valueReference"]["reference"] for e in extensions[fhir.FLAG_DETAIL_EXTENSION]] == [
        f"Observation/{fhir.reading_observation_id('device-1', MEASURED, spo2)}"]


def test_a_resolved_alert_is_an_inactive_flag_whose_period_ends_at_resolution():
    resolved = datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)
    flag = fhir.alert_flag(_alert(status="resolved", resolved_at=resolved), [])
    check_resource(flag)
    assert flag["status"] == "inactive"
    assert flag["period"] == {"start": "2026-11-27T15:30:30Z", "end": "2026-11-27T16:00:00Z"}


def test_a_sent_notification_is_a_completed_communication_about_the_flag():
    communication = fhir.notification_communication({
        "notification_id": 7, "channel": "webhook", "sent_at": datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc),
        "event_type": "opened", "severity": "critical", "audience": "care_team", "alert_id": 42,
        "patient_id": "patient-1", "rule_id": "hypoxia_emergency"})
    check_resource(communication)
    assert communication["status"] == "completed"
    assert communication["priority"] == "stat"
    assert communication["about"] == [{"reference": f"Flag/{fhir.flag_id(42)}"}]
