"""One rule engine, two clocks: the fast path judges the single-reading rules of rules.yaml with the
batch's matching code, on readings enriched as silver does, inside bronze's timestamp window."""

from datetime import datetime, timedelta, timezone

import pytest

from kidjamo.settings import Settings
from tests.alerts.conftest import alerts
from transforms.alerts.fast_path import PatientContext, evaluate_fast_path, raise_fast_path_alerts, single_reading_rules
from transforms.clinical.matching import CROSS_READING_RULES, MATCHERS
from transforms.clinical.rules import default_rules

RULES = default_rules()
RECEIVED = datetime(2026, 11, 27, 10, 0, 20, tzinfo=timezone.utc)


@pytest.fixture
def context(alerts_db):
    """p1 adult HbSS (born 1996), p2 child HbSC (born 2018), p3 infant HbSS (born 2026-06); devices d1-d3."""
    return PatientContext.load(alerts_db, RULES, RECEIVED)


def payload(patient: str = "p1", at: datetime = RECEIVED - timedelta(seconds=15), **vitals) -> dict:
    normal = {"p1": dict(spo2=97.0, heart_rate=75, temperature=36.8, respiratory_rate=14),
              "p2": dict(spo2=98.0, heart_rate=90, temperature=36.8, respiratory_rate=22),
              "p3": dict(spo2=98.0, heart_rate=130, temperature=36.8, respiratory_rate=35)}[patient]
    return {"device_id": f"d{patient[1:]}", "patient_id": patient, "timestamp": at.isoformat().replace("+00:00", "Z"),
            "vitals": {**normal, **vitals}, "metadata": {"battery_level": 80, "signal_quality": 90}}


def fired(context, *readings) -> dict[str, str]:
    candidates, _ = evaluate_fast_path(list(readings), context, received_at=RECEIVED, rules=RULES,
                                       settings=Settings())
    return dict(zip(candidates["rule_id"], candidates["severity"]))


def test_the_fast_path_judges_every_rule_but_the_cross_reading_ones():
    assert set(single_reading_rules(RULES)) == set(MATCHERS) - set(CROSS_READING_RULES)
    assert "pain_severe" in CROSS_READING_RULES and "sensor_flatline" in CROSS_READING_RULES


def test_a_normal_reading_raises_nothing(context):
    assert fired(context, payload("p1"), payload("p2")) == {}


def test_a_child_at_exactly_38_5_raises_the_critical_fever_alert(context):
    assert fired(context, payload("p2", temperature=38.5)) == {"fever": "critical"}


@pytest.mark.parametrize("temperature", [38.5, 38.0])
def test_an_infants_fever_is_one_fever_infant_alert_row_not_fever(alerts_db, context, temperature):
    # NICE feverish-child red flags: under 1 year, 38.0 °C or more is critical (fever_infant, which
    # replaces NHLBI's 38.5 °C fever); p3 is 6 months old. The load bench expects this row.
    raise_fast_path_alerts(alerts_db, [payload("p3", temperature=temperature)], received_at=RECEIVED, rules=RULES,
                           settings=Settings(), context=context)
    assert [(a["patient_id"], a["rule_id"], a["severity"], a["source"]) for a in alerts(alerts_db)] == \
        [("p3", "fever_infant", "critical", "fast_path")]


def test_an_eight_year_old_breathing_8_per_minute_is_critical_at_once(context):
    assert fired(context, payload("p2", respiratory_rate=8)) == {"bradypnoea": "critical"}


def test_the_stored_baseline_and_genotype_are_used(context):
    # p1 is HbSS without a stored baseline: the genotype default 96 % (drop of 3 at 93 %).
    raised = fired(context, payload("p1", spo2=93.0))
    assert raised["spo2_drop"] == "high" and raised["hypoxia"] == "high"


def test_warnings_are_judged_too(context):
    assert fired(context, payload("p1", ambient_temp=33.0)) == {"heat_exposure": "warning"}


@pytest.mark.parametrize(("shift", "raises"), [(timedelta(days=365), False), (timedelta(minutes=7), False),
                                               (timedelta(minutes=4), True), (-timedelta(days=6), True),
                                               (-timedelta(days=8), False)])
def test_the_timestamp_window_is_bronzes(context, shift, raises):
    assert bool(fired(context, payload("p2", temperature=39.0, at=RECEIVED + shift))) == raises


def test_an_implausible_value_is_left_out_and_the_others_are_still_judged(context):
    assert fired(context, payload("p2", spo2=40.0, temperature=39.0)) == {"fever": "critical"}


def test_a_reading_of_another_patients_device_raises_nothing(context):
    wrong = payload("p2", temperature=39.0)
    wrong["device_id"] = "d1"
    assert fired(context, wrong) == {}


def test_a_cross_reading_rule_waits_for_the_batch(context):
    assert "pain_severe" not in fired(context, payload("p1", pain_scale=10))


def test_the_evidence_says_it_came_from_the_fast_path(context):
    candidates, matches = evaluate_fast_path([payload("p2", temperature=38.6)], context, received_at=RECEIVED,
                                             rules=RULES, settings=Settings())
    (evidence,) = candidates["evidence"]
    assert evidence["fast_path"] and evidence["values"] == {"temperature": 38.6}
    assert list(matches["rule_id"]) == ["fever"]
