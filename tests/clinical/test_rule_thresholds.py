"""Each clinical rule (docs/clinical-rules.md) at, just inside and just outside its threshold (per age band where age matters)."""

from datetime import timedelta

import pandas as pd
import pytest

from tests.clinical.readings import BAND_AGE, T0, frame, reading, series
from transforms.alerts.evaluate import evaluate_rules
from transforms.clinical.rules import default_rules

RULES = default_rules()


def fired(rows, history=None) -> dict[str, str]:
    """{rule_id: severity} of the candidates raised by the rows."""
    candidates = evaluate_rules(frame(rows), frame(history) if history else None, as_of=T0 + timedelta(minutes=1), rules=RULES)
    return dict(zip(candidates["rule_id"], candidates["severity"]))


# (rule, reading values, expected severity or None) — at, just inside, just outside.
SINGLE_READING_CASES = [
    ("fever", dict(temperature=38.5), None),
    ("fever", dict(temperature=38.6), "critical"),
    ("fever", dict(temperature=40.0), "critical"),
    ("fever_infant", dict(age=0.99, temperature=38.0), "critical"),
    ("fever_infant", dict(age=0.99, temperature=37.9), None),
    ("fever_infant", dict(age=1.0, temperature=38.0), None),
    ("fever_infant", dict(age=0.1, temperature=38.2), "critical"),
    ("fever_onset", dict(temperature=38.0), "high"),
    ("fever_onset", dict(temperature=38.5), "high"),
    ("fever_onset", dict(temperature=37.9), None),
    ("fever_onset", dict(temperature=38.6), None),
    ("fever_onset", dict(age=0.5, temperature=38.2), None),
    ("hypothermia", dict(temperature=35.0), "high"),
    ("hypothermia", dict(temperature=34.9), "high"),
    ("hypothermia", dict(temperature=35.1), None),
    ("hypoxia", dict(spo2=94.0), "high"),
    ("hypoxia", dict(spo2=93.9), "high"),
    ("hypoxia", dict(spo2=94.1), None),
    ("hypoxia_severe", dict(spo2=90.0), None),
    ("hypoxia_severe", dict(spo2=89.9), "critical"),
    ("hypoxia_emergency", dict(spo2=85.0), None),
    ("hypoxia_emergency", dict(spo2=84.9), "critical"),
    ("spo2_drop", dict(spo2=95.0, spo2_baseline=98.0), "high"),
    ("spo2_drop", dict(spo2=95.0, spo2_baseline=97.9), None),
    ("spo2_drop", dict(spo2=96.0, spo2_baseline=99.5), None),
    ("spo2_drop", dict(spo2=95.9, spo2_baseline=99.5), "high"),
    ("spo2_drop", dict(spo2=93.0, spo2_baseline=96.0, genotype="HbSS"), "high"),
    ("spo2_drop", dict(spo2=93.1, spo2_baseline=96.0, genotype="HbSS"), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, temperature=38.6), "critical"),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, temperature=38.5), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, pain_scale=7), "critical"),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, pain_scale=6), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, respiratory_rate=18.0), "critical"),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, respiratory_rate=17.0), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=97.5, temperature=39.0), None),
    ("voc_pattern", dict(pain_scale=7, temperature=38.6), "critical"),
    ("voc_pattern", dict(pain_scale=7, temperature=38.5), None),
    ("voc_pattern", dict(pain_scale=7, spo2=94.0), "critical"),
    ("voc_pattern", dict(pain_scale=7, spo2=94.1), None),
    ("voc_pattern", dict(pain_scale=6, spo2=90.0), None),
    ("news2", dict(respiratory_rate=25.0, spo2=91.0, heart_rate=91.0), "critical"),  # 3 + 3 + 1 = 7
    ("news2", dict(respiratory_rate=21.0, spo2=93.0, heart_rate=91.0), "high"),  # 2 + 2 + 1 = 5
    ("news2", dict(respiratory_rate=21.0, spo2=94.0, heart_rate=91.0), None),  # 2 + 1 + 1 = 4
    ("news2", dict(heart_rate=131.0), "high"),  # a single parameter scoring 3
    ("news2", dict(heart_rate=130.0), None),
    ("news2", dict(age=15.9, respiratory_rate=25.0, spo2=91.0, heart_rate=91.0), None),
    ("news2", dict(age=16.0, respiratory_rate=25.0, spo2=91.0, heart_rate=91.0), "critical"),
    ("dehydration", dict(hydration_pct=70.0, hydration_baseline=80.0), "warning"),
    ("dehydration", dict(hydration_pct=70.1, hydration_baseline=80.0), None),
    ("dehydration", dict(hydration_pct=59.9, hydration_baseline=None), "warning"),
    ("dehydration", dict(hydration_pct=60.0, hydration_baseline=None), None),
    ("heat_dehydration", dict(hydration_pct=59.0, ambient_temp=32.0, activity_level=6), "high"),
    ("heat_dehydration", dict(hydration_pct=59.0, ambient_temp=31.9, activity_level=6), None),
    ("heat_dehydration", dict(hydration_pct=59.0, ambient_temp=32.0, activity_level=5), None),
    ("heat_dehydration", dict(hydration_pct=75.0, ambient_temp=35.0, activity_level=8), None),
    ("heat_exposure", dict(ambient_temp=32.0), "warning"),
    ("heat_exposure", dict(ambient_temp=31.9), None),
    ("heat_exposure", dict(ambient_temp=39.9), "warning"),
    ("heat_exposure", dict(ambient_temp=40.0), "high"),
    ("heat_exposure", dict(ambient_temp=30.0, ambient_humidity=70.0), "warning"),  # heat index 35 °C
    ("cold_exposure", dict(ambient_temp=10.0), "warning"),
    ("cold_exposure", dict(ambient_temp=9.0), "warning"),
    ("cold_exposure", dict(ambient_temp=10.1), None),
    ("sensor_battery", dict(battery_level=14.9), "info"),
    ("sensor_battery", dict(battery_level=15.0), None),
]


@pytest.mark.parametrize(("rule_id", "values", "severity"), SINGLE_READING_CASES,
                         ids=[f"{r}-{'-'.join(f'{k}={v}' for k, v in v.items())}" for r, v, _ in SINGLE_READING_CASES])
def test_single_reading_rule_threshold(rule_id, values, severity):
    assert fired([reading(**values)]).get(rule_id) == severity


# PEWS table per band: (normal high, extreme high value, normal low, extreme low value)
HEART = {"0-3m": (150, 190, 110, 80), "3-12m": (150, 180, 100, 70), "1-4y": (120, 170, 90, 60),
         "4-12y": (110, 150.1, 70, 50), ">12y": (100, 140, 60, 40)}
RESPIRATORY = {"0-3m": (61, 91), "3-12m": (51, 81), "1-4y": (41, 71), "4-12y": (31, 51), ">12y": (17, 30)}


@pytest.mark.parametrize("band", list(BAND_AGE))
def test_tachypnoea_by_age_band(band):
    normal_high, extreme = RESPIRATORY[band]
    age = BAND_AGE[band]
    assert fired([reading(age=age, respiratory_rate=float(normal_high))]).get("tachypnoea") is None
    assert fired([reading(age=age, respiratory_rate=normal_high + 1.0)]).get("tachypnoea") == "high"
    assert fired([reading(age=age, respiratory_rate=extreme - 1.0)]).get("tachypnoea") == "high"
    assert fired([reading(age=age, respiratory_rate=float(extreme))]).get("tachypnoea") == "critical"


@pytest.mark.parametrize("band", list(BAND_AGE))
def test_heart_rate_by_age_band(band):
    normal_high, extreme_high, normal_low, extreme_low = HEART[band]
    age = BAND_AGE[band]
    assert fired([reading(age=age, heart_rate=float(normal_high))]).get("heart_rate") is None
    assert fired([reading(age=age, heart_rate=normal_high + 1.0)]).get("heart_rate") == "warning"
    assert fired([reading(age=age, heart_rate=float(extreme_high))]).get("heart_rate") == "high"
    assert fired([reading(age=age, heart_rate=float(normal_low))]).get("heart_rate") is None
    assert fired([reading(age=age, heart_rate=normal_low - 1.0)]).get("heart_rate") == "warning"
    assert fired([reading(age=age, heart_rate=float(extreme_low))]).get("heart_rate") == "high"
    assert fired([reading(age=age, heart_rate=extreme_low + 1.0)]).get("heart_rate") == "warning"


def test_heart_rate_4_to_12_years_extreme_is_above_150_not_at_150():
    assert fired([reading(age=8.0, heart_rate=150.0)]).get("heart_rate") == "warning"
    assert fired([reading(age=8.0, heart_rate=151.0)]).get("heart_rate") == "high"


def test_pain_severe_needs_three_consecutive_readings():
    assert fired(series(2, pain_scale=7)).get("pain_severe") is None
    assert fired(series(3, pain_scale=7)).get("pain_severe") == "high"
    broken = series(3, pain_scale=7)
    broken[1]["pain_scale"] = 6
    assert fired(broken).get("pain_severe") is None


def test_pain_severe_counts_readings_of_previous_batches():
    history = series(2, pain_scale=8)
    batch = [reading(at=T0 + timedelta(seconds=60), index=2, pain_scale=7)]
    assert fired(batch, history=history).get("pain_severe") == "high"
    assert fired(batch, history=history[1:]).get("pain_severe") is None


def _varying(rows, vital):
    for i, row in enumerate(rows):
        row[vital] += i % 3
    return rows


def test_sensor_flatline_at_five_minutes_of_identical_values():
    # 10 readings 30 s apart span 4.5 min; the 11th reaches 5 minutes.
    assert fired(_varying(series(10, spo2=97.0), "heart_rate")).get("sensor_flatline") is None
    assert fired(_varying(series(11, spo2=97.0), "heart_rate")).get("sensor_flatline") == "warning"
    interrupted = _varying(series(11, spo2=97.0), "heart_rate")
    interrupted[5]["spo2"] = 97.1
    assert fired(interrupted).get("sensor_flatline") is None


def test_sensor_flatline_sees_across_batches():
    history = _varying(series(9, heart_rate=88.0), "spo2")
    batch = series(2, start=T0 + timedelta(seconds=270), heart_rate=88.0, spo2=96.0)
    assert fired(batch, history=history).get("sensor_flatline") == "warning"
    assert fired(batch, history=history[5:]).get("sensor_flatline") is None


def test_only_batch_readings_raise_candidates():
    history = [reading(temperature=39.5)]
    assert "fever" not in fired([reading(at=T0 + timedelta(seconds=30))], history=history)


def test_candidate_carries_evidence_lineage_and_lateness():
    rows = [reading(spo2=93.0, index=4, is_late=True, delay_seconds=7200.0)]
    candidates = evaluate_rules(frame(rows), None, as_of=T0, rules=RULES)
    hypoxia = candidates.set_index("rule_id").loc["hypoxia"]
    assert hypoxia["evidence"]["values"] == {"spo2": 93.0}
    assert hypoxia["evidence"]["thresholds"] == {"spo2_at_most": 94.0}
    assert hypoxia["evidence"]["rule"]["version"] == 1
    assert hypoxia["lineage"] == [{"device_id": "d1", "measured_at": T0.isoformat(), "raw_file": "raw/vitals/f.json",
                                   "record_index": 4}]
    assert hypoxia["is_late"] and hypoxia["delay_seconds"] == 7200.0


def test_a_more_specific_rule_supersedes_its_sibling():
    candidates = evaluate_rules(frame([reading(spo2=88.0)]), None, as_of=T0, rules=RULES).set_index("rule_id")
    assert candidates.loc["hypoxia", "superseded"]
    assert not candidates.loc["hypoxia_severe", "superseded"]


def test_a_normal_reading_raises_nothing_in_any_band():
    for age in BAND_AGE.values():
        assert fired([reading(age=age)]) == {}, age


def test_empty_batch_gives_no_candidates():
    assert evaluate_rules(pd.DataFrame(), None, as_of=T0, rules=RULES).empty
