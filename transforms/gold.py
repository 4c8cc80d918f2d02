"""Silver -> gold: per-batch patient-minute features, the input of the warehouse and the analysts.

Rows are grouped by arrival minute as well as by patient and measured minute, so a wide
re-process writes exactly the partitions the minute runs wrote.
"""

from __future__ import annotations

import pyarrow as pa

from kidjamo.lake.schema import GOLD

AGGREGATES = {
    "readings": ("measured_at", "count"),
    "spo2_min": ("spo2", "min"),
    "spo2_mean": ("spo2", "mean"),
    "heart_rate_mean": ("heart_rate", "mean"),
    "heart_rate_max": ("heart_rate", "max"),
    "temperature_max": ("temperature", "max"),
    "respiratory_rate_max": ("respiratory_rate", "max"),
    "hydration_min": ("hydration_pct", "min"),
    "pain_max": ("pain_scale", "max"),
    "activity_max": ("activity_level", "max"),
    "ambient_temp_max": ("ambient_temp", "max"),
    "battery_min": ("battery_level", "min"),
    "news2_max": ("news2_partial", "max"),
    "spo2_baseline": ("spo2_baseline", "first"),
    "age_band": ("age_band", "first"),
    "is_late": ("is_late", "any"),
}


def silver_to_gold(silver: pa.Table) -> pa.Table:
    """One row per (arrival minute, patient, measured minute) with the features the alerts and views use."""
    frame = silver.select(sorted({"arrival_minute", "patient_id", "measured_at", *[c for c, _ in AGGREGATES.values()]})).to_pandas()
    if frame.empty:
        return GOLD.empty_table()
    frame["minute"] = frame["measured_at"].dt.floor("min")
    gold = frame.groupby(["arrival_minute", "patient_id", "minute"], sort=True, observed=True).agg(**AGGREGATES).reset_index()
    return pa.Table.from_pandas(gold[GOLD.names], schema=GOLD, preserve_index=False)
