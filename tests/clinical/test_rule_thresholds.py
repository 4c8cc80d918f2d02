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
    # NHLBI 2014: seek care at once at 38.5 °C (101.3 °F) or more.
    ("fever", dict(temperature=38.5), "critical"),
    ("fever", dict(temperature=38.49), None),
    ("fever", dict(age=8.0, temperature=38.5), "critical"),
    ("fever", dict(temperature=40.0), "critical"),
    ("fever_infant", dict(age=0.99, temperature=38.0), "critical"),
    ("fever_infant", dict(age=0.99, temperature=37.9), None),
    ("fever_infant", dict(age=1.0, temperature=38.0), None),
    ("fever_infant", dict(age=0.1, temperature=38.2), "critical"),
    ("fever_onset", dict(temperature=38.0), "high"),
    ("fever_onset", dict(temperature=38.49), "high"),
    ("fever_onset", dict(temperature=38.5), None),
    ("fever_onset", dict(temperature=37.9), None),
    ("fever_onset", dict(temperature=38.6), None),
    ("fever_onset", dict(age=0.5, temperature=38.2), None),
    # NEWS2 (RCP 2017): ≤ 35.0 °C scores 3. NICE NG143: below 36 °C in an infant under 3 months.
    ("hypothermia", dict(temperature=35.0), "high"),
    ("hypothermia", dict(temperature=34.9), "high"),
    ("hypothermia", dict(temperature=35.1), None),
    ("hypothermia", dict(age=8.0, temperature=35.9), None),
    ("hypothermia", dict(age=0.1, temperature=35.9), "high"),
    ("hypothermia", dict(age=0.1, temperature=36.0), None),
    ("hypothermia", dict(age=0.24, temperature=35.5), "high"),
    ("hypothermia", dict(age=0.26, temperature=35.5), None),
    # BCSH 2015 (Howard et al.): blood gases at SpO2 ≤ 94 % on air.
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
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, temperature=38.5), "critical"),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, temperature=38.4), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, pain_scale=7), "critical"),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, pain_scale=6), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, respiratory_rate=21.0), "critical"),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=98.0, respiratory_rate=20.0), None),
    ("acs_pattern", dict(spo2=95.0, spo2_baseline=97.5, temperature=39.0), None),
    ("voc_pattern", dict(pain_scale=7, temperature=38.5), "critical"),
    ("voc_pattern", dict(pain_scale=7, temperature=38.4), None),
    ("voc_pattern", dict(pain_scale=7, spo2=94.0), "critical"),
    ("voc_pattern", dict(pain_scale=7, spo2=94.1), None),
    ("voc_pattern", dict(pain_scale=6, spo2=90.0), None),
    ("news2", dict(respiratory_rate=25.0, spo2=91.0, heart_rate=91.0), "critical"),  # 3 + 3 + 1 = 7
    ("news2", dict(respiratory_rate=21.0, spo2=93.0, heart_rate=91.0), "high"),  # 2 + 2 + 1 = 5
    ("news2", dict(respiratory_rate=21.0, spo2=94.0, heart_rate=91.0), None),  # 2 + 1 + 1 = 4
    ("news2", dict(heart_rate=131.0), "high"),  # a single parameter scoring 3
    ("news2", dict(heart_rate=130.0), None),
    # A missing parameter makes the score incomplete, never 0: what was measured still counts.
    ("news2", dict(respiratory_rate=None, spo2=91.0, heart_rate=131.0, temperature=39.1), "critical"),  # ≥ 3+3+2
    ("news2", dict(respiratory_rate=None, spo2=93.0, heart_rate=111.0, temperature=36.8), None),  # 2+2+0, incomplete
    ("news2", dict(respiratory_rate=21.0, spo2=93.0, temperature=38.04, heart_rate=70.0), "high"),  # 2+2+1 (38.04 → 1)
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
    # NWS heat index: extreme caution from 90 °F (32 °C), danger from 103 °F (39.4 °C).
    ("heat_exposure", dict(ambient_temp=30.0, ambient_humidity=70.0), "warning"),  # 86 °F, 70 % RH: 95 °F
    ("heat_exposure", dict(ambient_temp=(90 - 32) / 1.8, ambient_humidity=40.0), "warning"),  # 93 °F
    ("heat_exposure", dict(ambient_temp=(86 - 32) / 1.8, ambient_humidity=40.0), None),  # 85 °F
    ("heat_exposure", dict(ambient_temp=35.0, ambient_humidity=70.0), "high"),  # 95 °F, 70 % RH: 124 °F
    ("heat_exposure", dict(ambient_temp=(96 - 32) / 1.8, ambient_humidity=45.0), "high"),  # 108 °F
    ("heat_exposure", dict(ambient_temp=(90 - 32) / 1.8, ambient_humidity=60.0), "warning"),  # 100 °F
    # Humidity unknown: the heat index is unknown; the ambient temperature meets the same cut-offs.
    ("heat_exposure", dict(ambient_temp=32.0), "warning"),
    ("heat_exposure", dict(ambient_temp=31.9), None),
    ("heat_exposure", dict(ambient_temp=39.3), "warning"),
    ("heat_exposure", dict(ambient_temp=39.4), "high"),
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


# Fast breathing, written from the sources: WHO/IMCI "≥ 60/min under 2 months, ≥ 50 at 2–11 months,
# ≥ 40 at 12–59 months"; Bedside PEWS (Parshuram 2009, Table 1) normal "< 61 / < 51 / < 41 / < 31 / < 17"
# and extreme "≥ 91 / ≥ 81 / ≥ 71 / ≥ 51 / ≥ 30"; NEWS2 (RCP 2017) for 16 and over: 21–24 scores 2,
# ≥ 25 scores 3. (age in years, rate, expected severity)
TACHYPNOEA = [
    (1 / 12, 59, None), (1 / 12, 60, "high"), (1 / 12, 90, "high"), (1 / 12, 91, "critical"),  # WHO 60 < PEWS 61
    (2.5 / 12, 49, None), (2.5 / 12, 50, "high"),  # WHO 2-11 months (PEWS 0-3 m band says 61)
    (0.5, 49, None), (0.5, 50, "high"), (0.5, 51, "high"), (0.5, 80, "high"), (0.5, 81, "critical"),
    (2.0, 39, None), (2.0, 40, "high"), (2.0, 41, "high"), (2.0, 71, "critical"),
    (4.5, 30, None), (4.5, 31, "high"),  # PEWS 31 is below WHO's 40 at 4 years
    (8.0, 30, None), (8.0, 31, "high"), (8.0, 50, "high"), (8.0, 51, "critical"),
    (13.0, 16, None), (13.0, 17, "high"), (13.0, 29, "high"), (13.0, 30, "critical"),
    (16.0, 20, None), (16.0, 21, "high"), (16.0, 24, "high"), (16.0, 25, "critical"),
    (30.0, 18, None), (30.0, 20, None), (30.0, 20.5, "high"), (30.0, 24.5, "critical"),
]


@pytest.mark.parametrize(("age", "rate", "severity"), TACHYPNOEA, ids=[f"age={a:.2f}-rr={r}" for a, r, _ in TACHYPNOEA])
def test_tachypnoea_fires_at_the_lower_of_who_and_pews_and_follows_news2_for_adults(age, rate, severity):
    assert fired([reading(age=age, respiratory_rate=float(rate))]).get("tachypnoea") == severity


def test_the_issue_examples_of_missed_fast_breathing_now_alert():
    assert fired([reading(age=0.5, respiratory_rate=51.0)]).get("tachypnoea") == "high"
    assert fired([reading(age=2.0, respiratory_rate=41.0)]).get("tachypnoea") == "high"


# Slow breathing, written from the sources: Bedside PEWS normal "> 29 / > 24 / > 19 / > 19 / > 11"
# (≤ scores 1) and extreme "≤ 15 / ≤ 15 / ≤ 12 / ≤ 10 / ≤ 9"; NEWS2 for 16 and over: 9–11 scores 1, ≤ 8 scores 3.
BRADYPNOEA = [
    (1 / 12, 30, None), (1 / 12, 29, "high"), (1 / 12, 16, "high"), (1 / 12, 15, "critical"),
    (0.5, 25, None), (0.5, 24, "high"), (0.5, 15, "critical"),
    (2.0, 20, None), (2.0, 19, "high"), (2.0, 13, "high"), (2.0, 12, "critical"),
    (8.0, 20, None), (8.0, 19, "high"), (8.0, 11, "high"), (8.0, 10, "critical"), (8.0, 8, "critical"),
    (8.0, 0, "critical"),  # apnoea
    (13.0, 12, None), (13.0, 11, "high"), (13.0, 10, "high"), (13.0, 9, "critical"),
    (16.0, 12, None), (16.0, 11, "high"), (16.0, 9, "high"), (16.0, 8, "critical"),
    (30.0, 11.5, "high"), (30.0, 8.5, "critical"), (30.0, 0, "critical"),
]


@pytest.mark.parametrize(("age", "rate", "severity"), BRADYPNOEA, ids=[f"age={a:.2f}-rr={r}" for a, r, _ in BRADYPNOEA])
def test_bradypnoea_follows_pews_for_children_and_news2_for_adults(age, rate, severity):
    assert fired([reading(age=age, respiratory_rate=float(rate))]).get("bradypnoea") == severity


def test_an_eight_year_old_breathing_8_per_minute_is_critical():
    assert fired([reading(age=8.0, respiratory_rate=8.0)]) == {"bradypnoea": "critical"}


def test_an_adult_breathing_18_per_minute_with_an_spo2_drop_is_not_an_acs_pattern():
    raised = fired([reading(age=30.0, spo2=95.0, spo2_baseline=98.0, respiratory_rate=18.0)])
    assert "acs_pattern" not in raised and "tachypnoea" not in raised
    assert fired([reading(age=30.0, spo2=95.0, spo2_baseline=98.0, respiratory_rate=21.0)])["acs_pattern"] == "critical"
    assert fired([reading(age=8.0, spo2=95.0, spo2_baseline=98.0, respiratory_rate=31.0)])["acs_pattern"] == "critical"


# Bedside PEWS heart rate (Parshuram 2009, Table 1): (normal low, normal high) exclusive, and the
# values at which sub-score 4 starts on each side.
HEART = {"0-3m": ((110, 150), (190, 80)), "3-12m": ((100, 150), (180, 70)), "1-4y": ((90, 120), (170, 60)),
         "4-12y": ((70, 110), (150.5, 50)), ">12y": ((60, 100), (140, 40))}


@pytest.mark.parametrize("band", list(BAND_AGE))
def test_heart_rate_by_age_band(band):
    (normal_low, normal_high), (extreme_high, extreme_low) = HEART[band]
    age = BAND_AGE[band]
    assert fired([reading(age=age, heart_rate=normal_high - 1.0)]).get("heart_rate") is None
    assert fired([reading(age=age, heart_rate=float(normal_high))]).get("heart_rate") == "warning"
    assert fired([reading(age=age, heart_rate=float(extreme_high))]).get("heart_rate") == "high"
    assert fired([reading(age=age, heart_rate=normal_low + 1.0)]).get("heart_rate") is None
    assert fired([reading(age=age, heart_rate=float(normal_low))]).get("heart_rate") == "warning"
    assert fired([reading(age=age, heart_rate=float(extreme_low))]).get("heart_rate") == "high"
    assert fired([reading(age=age, heart_rate=extreme_low + 1.0)]).get("heart_rate") == "warning"


def test_heart_rate_4_to_12_years_extreme_is_above_150_not_at_150():
    assert fired([reading(age=8.0, heart_rate=150.0)]).get("heart_rate") == "warning"
    assert fired([reading(age=8.0, heart_rate=151.0)]).get("heart_rate") == "high"


def test_pain_severe_needs_three_severe_readings_within_30_minutes():
    assert fired(series(2, pain_scale=7)).get("pain_severe") is None
    assert fired(series(3, pain_scale=7)).get("pain_severe") == "high"
    sparse = series(3, every=timedelta(minutes=15), pain_scale=8)  # 0, 15, 30 minutes: within the window
    assert fired(sparse).get("pain_severe") == "high"
    too_sparse = series(3, every=timedelta(minutes=15, seconds=1), pain_scale=8)
    assert fired(too_sparse).get("pain_severe") is None


def test_pain_severe_allows_gaps_between_severe_readings():
    rows = series(5, every=timedelta(minutes=5), pain_scale=8)
    rows[1]["pain_scale"] = 5
    rows[3]["pain_scale"] = None
    assert fired(rows).get("pain_severe") == "high"


def test_pain_severe_counts_each_patient_apart():
    rows = series(2, pain_scale=8) + [reading(at=T0 + timedelta(seconds=90), patient_id="p2", device_id="d2", pain_scale=8)]
    assert fired(rows).get("pain_severe") is None


def test_a_single_pain_of_10_is_at_least_high():
    assert fired([reading(pain_scale=10)]).get("pain_severe") == "high"
    assert fired([reading(pain_scale=9)]).get("pain_severe") is None


def test_pain_severe_counts_readings_of_previous_batches():
    history = series(2, every=timedelta(minutes=10), pain_scale=8)
    batch = [reading(at=T0 + timedelta(minutes=25), index=2, pain_scale=7)]
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
    assert hypoxia["evidence"]["rule"]["version"] == 2
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
