"""The patient page's Vega-Lite specification: valid against the schema, filled with the patient's data."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from care import charts, queries
from care.i18n import Translator
from transforms.clinical.rules import default_rules

END = datetime(2026, 12, 2, 16, 0, tzinfo=timezone.utc)


def series(window: queries.Window, *, missing: slice = slice(0, 0)) -> pd.DataFrame:
    buckets = pd.date_range(END - window.length, END, freq=window.bucket, inclusive="left", name="bucket")
    frame = pd.DataFrame({"bucket": buckets, "readings": 2.0})
    for vital in queries.VITALS:
        frame[vital] = frame[f"{vital}_min"] = frame[f"{vital}_max"] = 50.0
    frame.iloc[missing, 1:] = float("nan")
    return frame


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("time_format", ["%H:%M", "%d %b %H:%M"])
def test_every_chart_template_is_valid_vega_lite(language, time_format):
    charts._template.cache_clear()
    spec = charts._template(language, "UTC", time_format, validate=True)
    assert len(spec["vconcat"]) == len(queries.VITALS)


def test_the_charts_carry_the_patients_thresholds_alerts_and_gaps():
    window = queries.WINDOWS["6h"]
    spec = charts.patient_charts(series(window, missing=slice(10, 20)), {"spo2": [("hypoxia", 94.0), ("spo2_drop", 93.0)]},
                                 [{"alert_id": 7, "severity": "critical", "rule_id": "hypoxia_emergency", "title": "SpO2",
                                   "first_reading_at": END - timedelta(days=2)}], Translator("en"))
    data = spec["datasets"]
    assert [(row["value"], row["side"]) for row in data["thresholds_spo2"]] == [(94.0, "left"), (93.0, "right")]
    assert data["alerts"][0]["marker"] == "‼ hypoxia_emergency"
    assert data["alerts"][0]["first_reading_at"] == data["series"][0]["bucket"]  # began before the period: marked at its start
    assert sum(row["spo2"] is None for row in data["series"]) == 10


def test_gaps_are_the_runs_of_buckets_without_a_reading():
    window = queries.WINDOWS["24h"]
    frame = series(window, missing=slice(3, 6))
    assert queries.gaps(frame) == [(frame["bucket"][3].to_pydatetime(), frame["bucket"][6].to_pydatetime())]


def test_a_window_ends_with_the_bucket_that_holds_now():
    start, end = queries.window_bounds(queries.WINDOWS["7d"], datetime(2026, 12, 2, 15, 47, 12, tzinfo=timezone.utc))
    assert end == datetime(2026, 12, 2, 16, 0, tzinfo=timezone.utc) and end - start == timedelta(days=7)


def test_thresholds_follow_the_age_band_and_the_baseline():
    lines = queries.thresholds({"age_years": 0.5, "age_band": "3-12m", "spo2_baseline": 95.0, "hydration_baseline": 80.0}, default_rules())
    assert ("fever_infant", 38.0) in lines["temperature"]
    assert ("heart_rate", 100) in lines["heart_rate"] and ("heart_rate", 150) in lines["heart_rate"]
    assert ("spo2_drop", 92.0) in lines["spo2"]
    assert ("dehydration", 70.0) in lines["hydration_pct"]
