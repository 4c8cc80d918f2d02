"""Which readings match which rule, vectorized: one severity per (reading, rule), or nothing.

Every matcher takes the readings of a batch together with their recent history (sorted by
patient and time) and returns a Series of severities aligned with them (None where the rule does
not match). Thresholds come from the validated rule set (``rules.yaml``), never from code.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from transforms.clinical import scores
from transforms.clinical.rules import Rule, RuleSet

Matcher = Callable[[pd.DataFrame, Rule, RuleSet], pd.Series]


def _severity(frame: pd.DataFrame, condition: pd.Series, severity: str) -> pd.Series:
    return pd.Series(np.where(condition.fillna(False).to_numpy(dtype=bool), severity, None), index=frame.index, dtype="object")


def _choose(frame: pd.DataFrame, ladder: list[tuple[pd.Series, str]]) -> pd.Series:
    """The first severity of ``ladder`` (most severe first) whose condition holds."""
    conditions = [condition.fillna(False).to_numpy(dtype=bool) for condition, _ in ladder]
    chosen = np.select(conditions, [severity for _, severity in ladder], default="")
    return pd.Series(np.where(chosen == "", None, chosen), index=frame.index, dtype="object")


def _band(frame: pd.DataFrame, vital: str, rules: RuleSet) -> pd.DataFrame:
    return scores.pews_band(frame[vital], frame["age_band"], vital, rules)


def fever(frame, rule, rules):
    return _severity(frame, frame["temperature"] >= rule.thresholds.temperature_at_least, rule.severity)


def fever_infant(frame, rule, rules):
    t = rule.thresholds
    return _severity(frame, (frame["age_years"] < t.age_below_years) & (frame["temperature"] >= t.temperature_at_least), rule.severity)


def fever_onset(frame, rule, rules):
    t = rule.thresholds
    # An unknown age is treated as >= 1 year: an infant's stricter rule cannot apply without it.
    old_enough = (frame["age_years"] >= t.age_at_least_years) | frame["age_years"].isna()
    in_range = (frame["temperature"] >= t.temperature_at_least) & (frame["temperature"] < t.temperature_below)
    return _severity(frame, old_enough & in_range, rule.severity)


def hypothermia(frame, rule, rules):
    t = rule.thresholds
    infant = (frame["age_years"] < t.infant_age_below_years) & (frame["temperature"] < t.infant_temperature_below)
    return _severity(frame, (frame["temperature"] <= t.temperature_at_most) | infant, rule.severity)


def hypoxia(frame, rule, rules):
    return _severity(frame, frame["spo2"] <= rule.thresholds.spo2_at_most, rule.severity)


def spo2_below(frame, rule, rules):
    return _severity(frame, frame["spo2"] < rule.thresholds.spo2_below, rule.severity)


def _spo2_drop(frame: pd.DataFrame, rules: RuleSet) -> pd.Series:
    t = rules["spo2_drop"].thresholds
    return (frame["spo2"] < t.spo2_below) & ((frame["spo2_baseline"] - frame["spo2"]) >= t.drop_at_least)


def spo2_drop(frame, rule, rules):
    return _severity(frame, _spo2_drop(frame, rules), rule.severity)


def _adult(frame: pd.DataFrame, adults_from_years: float) -> pd.Series:
    return (frame["age_years"] >= adults_from_years).fillna(False)


def _who_fast_breathing(frame: pd.DataFrame, rules: RuleSet) -> pd.Series:
    """At or above the WHO/IMCI fast-breathing cut-off of the child's age in months (False outside 0-59 months)."""
    months = frame["age_years"] * 12
    fast = pd.Series(False, index=frame.index)
    for band in rules["tachypnoea"].thresholds.who_fast_breathing:
        in_band = (months >= band.min_months) & (months < band.max_months)
        fast |= (in_band & (frame["respiratory_rate"] >= band.at_least)).fillna(False)
    return fast


def fast_breathing(frame: pd.DataFrame, rules: RuleSet) -> tuple[pd.Series, pd.Series]:
    """(fast, extreme) breathing for age: under 16 the lower of WHO/IMCI and the PEWS band, else NEWS2 bins."""
    t = rules["tachypnoea"].thresholds
    adult = _adult(frame, t.adults_from_years)
    band = _band(frame, "respiratory_rate", rules)
    rate = frame["respiratory_rate"]
    fast = (~adult & (band["above_normal"] | _who_fast_breathing(frame, rules))) | (adult & (rate > t.adult_above))
    extreme = (~adult & band["extreme_high"]) | (adult & (rate > t.adult_extreme_above))
    return fast.fillna(False), extreme.fillna(False)


def slow_breathing(frame: pd.DataFrame, rules: RuleSet) -> tuple[pd.Series, pd.Series]:
    """(slow, extreme) breathing for age: under 16 the PEWS band's low side, else NEWS2 bins."""
    t = rules["bradypnoea"].thresholds
    adult = _adult(frame, t.adults_from_years)
    band = _band(frame, "respiratory_rate", rules)
    rate = frame["respiratory_rate"]
    slow = (~adult & band["below_normal"]) | (adult & (rate < t.adult_below))
    extreme = (~adult & band["extreme_low"]) | (adult & (rate < t.adult_extreme_below))
    return slow.fillna(False), extreme.fillna(False)


def acs_pattern(frame, rule, rules):
    t = rule.thresholds
    fast, _ = fast_breathing(frame, rules)
    companion = fast | (frame["temperature"] >= t.temperature_at_least) | (frame["pain_scale"] >= t.pain_at_least)
    return _severity(frame, _spo2_drop(frame, rules) & companion, rule.severity)


def tachypnoea(frame, rule, rules):
    fast, extreme = fast_breathing(frame, rules)
    return _choose(frame, [(extreme, rule.thresholds.extreme_severity), (fast, rule.severity)])


def bradypnoea(frame, rule, rules):
    slow, extreme = slow_breathing(frame, rules)
    return _choose(frame, [(extreme, rule.thresholds.extreme_severity), (slow, rule.severity)])


def heart_rate(frame, rule, rules):
    band = _band(frame, "heart_rate", rules)
    extreme = band["extreme_high"] | band["extreme_low"]
    outside = band["above_normal"] | band["below_normal"]
    return _choose(frame, [(extreme, rule.thresholds.extreme_severity), (outside, rule.severity)])


def pain_severe(frame, rule, rules):
    t = rule.thresholds
    ordered = frame.sort_values(["patient_id", "measured_at"], kind="stable")
    pain = ordered["pain_scale"]
    severe = (pain >= t.pain_at_least).fillna(False).to_numpy(dtype=bool)
    # Count severe readings of the same patient within the window ending at each reading: one sorted
    # key per (patient, time) lets a single searchsorted find every window's start.
    patient = pd.factorize(ordered["patient_id"])[0].astype("int64")
    millis = ((ordered["measured_at"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")
    window = int(t.window_minutes * 60_000)
    offset = millis - (millis.min() if len(millis) else 0)
    key = patient * (int(offset.max(initial=0)) + window + 1) + offset
    severe_before = np.concatenate([[0], np.cumsum(severe)])
    start = np.searchsorted(key, key - window, side="left")
    in_window = severe_before[1:] - severe_before[start]
    sustained = severe & (in_window >= t.readings_at_least)
    single = (pain >= t.single_reading_at_least).fillna(False).to_numpy(dtype=bool)
    matched = pd.Series(sustained | single, index=ordered.index).reindex(frame.index)
    return _severity(frame, matched, rule.severity)


def voc_pattern(frame, rule, rules):
    t = rule.thresholds
    companion = (frame["temperature"] >= t.temperature_at_least) | (frame["spo2"] <= t.spo2_at_most)
    return _severity(frame, (frame["pain_scale"] >= t.pain_at_least) & companion, rule.severity)


def news2(frame, rule, rules):
    t = rule.thresholds
    adult = _adult(frame, t.age_at_least_years)
    parameters = scores.news2_parameter_scores(frame["respiratory_rate"], frame["spo2"], frame["heart_rate"],
                                               frame["temperature"]).astype("float64")
    # With a parameter missing the score is incomplete, not lower: the measured part is a lower
    # bound, so it alone can reach a band, but a missing parameter never counts as 0 = reassuring.
    measured_sum = parameters.sum(axis=1, skipna=True).where(parameters.notna().any(axis=1))
    single = parameters.max(axis=1, skipna=True)
    return _choose(frame, [
        (adult & (measured_sum >= t.critical_at_least), t.critical_severity),
        (adult & ((measured_sum >= t.high_at_least) | (single >= t.single_parameter_at_least)), rule.severity),
    ])


def _dehydrated(frame: pd.DataFrame, rules: RuleSet) -> pd.Series:
    t = rules["dehydration"].thresholds
    below_baseline = (frame["hydration_baseline"] - frame["hydration_pct"]) >= t.drop_at_least
    return below_baseline.fillna(False) | (frame["hydration_pct"] < t.hydration_below).fillna(False)


def dehydration(frame, rule, rules):
    return _severity(frame, _dehydrated(frame, rules), rule.severity)


def heat_dehydration(frame, rule, rules):
    t = rule.thresholds
    hot_and_active = (frame["ambient_temp"] >= t.ambient_at_least) & (frame["activity_level"] >= t.activity_at_least)
    return _severity(frame, _dehydrated(frame, rules) & hot_and_active, rule.severity)


def heat_exposure(frame, rule, rules):
    t = rule.thresholds
    # Computed here, not read from the silver column, so the rule never mistakes another value for it.
    heat_index = scores.heat_index_c(frame["ambient_temp"], frame["ambient_humidity"])["heat_index_c"]
    # Without humidity the heat index is unknown (the alert's evidence shows no humidity): judge the
    # ambient temperature against the same cut-offs rather than stay silent.
    heat = heat_index.fillna(frame["ambient_temp"])
    return _choose(frame, [(heat >= t.high_at_least, t.high_severity), (heat >= t.heat_index_at_least, rule.severity)])


def cold_exposure(frame, rule, rules):
    return _severity(frame, frame["ambient_temp"] <= rule.thresholds.ambient_at_most, rule.severity)


def sensor_flatline(frame, rule, rules):
    t = rule.thresholds
    by_device = frame.sort_values(["device_id", "measured_at"], kind="stable")
    flat = pd.Series(False, index=by_device.index)
    new_device = by_device["device_id"] != by_device["device_id"].shift()
    for vital in t.vitals:
        values = by_device[vital]
        # A run is a stretch of identical values on one device; a missing value ends the run.
        run_id = (new_device | (values != values.shift()) | values.isna()).cumsum()
        run_start = by_device["measured_at"].groupby(run_id).transform("min")
        flat |= values.notna() & ((by_device["measured_at"] - run_start) >= pd.Timedelta(minutes=t.minutes))
    return _severity(frame, flat.reindex(frame.index), rule.severity)


def sensor_battery(frame, rule, rules):
    return _severity(frame, frame["battery_level"] < rule.thresholds.battery_below, rule.severity)


#: Rules that need earlier readings of the patient (a window of pain, a flatline): judged by the
#: minute batch only. Every other matcher needs just the reading, the registry and the baseline.
CROSS_READING_RULES = ("pain_severe", "sensor_flatline")

#: Rules judged reading by reading (sensor_silent is judged from devices' last readings instead).
MATCHERS: dict[str, Matcher] = {
    "fever": fever,
    "fever_infant": fever_infant,
    "fever_onset": fever_onset,
    "hypothermia": hypothermia,
    "hypoxia": hypoxia,
    "hypoxia_severe": spo2_below,
    "hypoxia_emergency": spo2_below,
    "spo2_drop": spo2_drop,
    "acs_pattern": acs_pattern,
    "tachypnoea": tachypnoea,
    "bradypnoea": bradypnoea,
    "heart_rate": heart_rate,
    "pain_severe": pain_severe,
    "voc_pattern": voc_pattern,
    "news2": news2,
    "dehydration": dehydration,
    "heat_dehydration": heat_dehydration,
    "heat_exposure": heat_exposure,
    "cold_exposure": cold_exposure,
    "sensor_flatline": sensor_flatline,
    "sensor_battery": sensor_battery,
}

#: The reading values each rule's evidence shows, besides the rule's thresholds.
EVIDENCE_VALUES: dict[str, list[str]] = {
    "fever": ["temperature"], "fever_infant": ["temperature", "age_years"], "fever_onset": ["temperature", "age_years"],
    "hypothermia": ["temperature", "age_years"], "hypoxia": ["spo2"], "hypoxia_severe": ["spo2"], "hypoxia_emergency": ["spo2"],
    "spo2_drop": ["spo2"], "acs_pattern": ["spo2", "respiratory_rate", "temperature", "pain_scale"],
    "tachypnoea": ["respiratory_rate", "age_years"], "bradypnoea": ["respiratory_rate", "age_years"],
    "heart_rate": ["heart_rate"], "pain_severe": ["pain_scale"],
    "voc_pattern": ["pain_scale", "temperature", "spo2"],
    "news2": ["news2_partial", "news2_measured_sum", "news2_max_parameter", "respiratory_rate", "spo2", "heart_rate",
              "temperature"],
    "dehydration": ["hydration_pct"], "heat_dehydration": ["hydration_pct", "ambient_temp", "activity_level"],
    "heat_exposure": ["heat_index_c", "ambient_temp", "ambient_humidity"], "cold_exposure": ["ambient_temp"],
    "sensor_flatline": ["spo2", "heart_rate"], "sensor_battery": ["battery_level"],
}
