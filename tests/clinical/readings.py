"""Silver-like readings for rule tests: a well patient of a given age, with chosen vitals overridden."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from transforms.clinical import scores
from transforms.clinical.rules import default_rules

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
# A typical age in each PEWS band, with well values inside the band's normal ranges.
BAND_AGE = {"0-3m": 0.1, "3-12m": 0.5, "1-4y": 2.0, "4-12y": 8.0, ">12y": 30.0}
WELL_HEART_RATE = {"0-3m": 130, "3-12m": 125, "1-4y": 105, "4-12y": 90, ">12y": 75}
WELL_RESPIRATORY_RATE = {"0-3m": 40, "3-12m": 35, "1-4y": 28, "4-12y": 22, ">12y": 14}


def reading(age: float = 30.0, at: datetime = T0, patient_id: str = "p1", device_id: str = "d1", index: int = 0,
            **vitals) -> dict:
    band = scores.age_band(pd.Series([age]), default_rules()).iloc[0]
    row = {
        "device_id": device_id, "patient_id": patient_id, "measured_at": at,
        "spo2": 98.0, "heart_rate": float(WELL_HEART_RATE[band]), "temperature": 36.8, "ambient_temp": 24.0,
        "respiratory_rate": float(WELL_RESPIRATORY_RATE[band]), "hydration_pct": 80.0, "activity_level": 2,
        "pain_scale": 0, "ambient_humidity": None, "battery_level": 80.0, "age_years": age, "age_band": band,
        "genotype": "HbSS", "spo2_baseline": 98.0, "heart_rate_baseline": float(WELL_HEART_RATE[band]),
        "temperature_baseline": 36.8, "hydration_baseline": 80.0, "raw_file": "raw/vitals/f.json",
        "record_index": index, "is_late": False, "delay_seconds": 30.0,
    }
    row.update(vitals)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    """A silver-like frame with derived scores, as the silver step computes them."""
    if not rows:
        return pd.DataFrame()
    data = pd.DataFrame(rows)
    data["measured_at"] = pd.to_datetime(data["measured_at"], utc=True)
    news2 = scores.news2_partial(data["respiratory_rate"], data["spo2"], data["heart_rate"], data["temperature"],
                                 data["age_years"])
    heat = scores.heat_index_c(data["ambient_temp"], data["ambient_humidity"])
    return pd.concat([data, news2, heat], axis=1)


def series(count: int, *, every: timedelta = timedelta(seconds=30), start: datetime = T0, **kwargs) -> list[dict]:
    return [reading(at=start + every * i, index=i, **kwargs) for i in range(count)]
