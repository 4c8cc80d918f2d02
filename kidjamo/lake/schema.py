"""Arrow schemas of the lake layers: the contract between the layer steps, the gates and the loads.

Timestamps are UTC microseconds. A column added here must be added to the database load
(``transforms/load.py``) and the gate suites (``expectations/``) in the same change.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

#: The vitals of the payload, with their Arrow type and plausibility range (the landing contract, README).
VITALS: dict[str, tuple[pa.DataType, float, float]] = {
    "spo2": (pa.float64(), 50, 100),
    "heart_rate": (pa.float64(), 25, 300),
    "temperature": (pa.float64(), 30, 45),
    "ambient_temp": (pa.float64(), -40, 60),
    "respiratory_rate": (pa.float64(), 4, 120),
    "hydration_pct": (pa.float64(), 0, 100),
    "activity_level": (pa.int16(), 0, 10),
    "pain_scale": (pa.int16(), 0, 10),
}
#: Optional vitals: absent in most payloads, range-checked when present.
OPTIONAL_VITALS: dict[str, tuple[pa.DataType, float, float]] = {
    "ambient_humidity": (pa.float64(), 0, 100),
}
METADATA: dict[str, tuple[pa.DataType, float, float]] = {
    "battery_level": (pa.float64(), 0, 100),
    "signal_quality": (pa.float64(), 0, 100),
}
#: Every range-checked field, as (section, name) -> (type, low, high).
RANGES: dict[tuple[str, str], tuple[pa.DataType, float, float]] = {
    **{("vitals", name): spec for name, spec in VITALS.items()},
    **{("vitals", name): spec for name, spec in OPTIONAL_VITALS.items()},
    **{("metadata", name): spec for name, spec in METADATA.items()},
}

LINEAGE = [
    pa.field("raw_file", pa.string(), nullable=False),  # lake path of the raw copy
    pa.field("record_index", pa.int32(), nullable=False),  # position of the record in that file
    pa.field("record_hash", pa.string(), nullable=False),  # sha256 of the record's canonical JSON
    pa.field("arrival_minute", TS, nullable=False),  # landing partition the file arrived in
    pa.field("ingested_at", TS, nullable=False),  # when the pipeline run processed the record
]

BRONZE = pa.schema(
    [
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("measured_at", TS, nullable=False),
        pa.field("message_id", pa.string()),
        *[pa.field(name, spec[0]) for name, spec in VITALS.items()],
        *[pa.field(name, spec[0]) for name, spec in OPTIONAL_VITALS.items()],
        *[pa.field(name, spec[0]) for name, spec in METADATA.items()],
        pa.field("firmware_version", pa.string()),
        pa.field("extra_fields", pa.int16(), nullable=False),  # unknown fields kept in raw, counted here
        *LINEAGE,
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("layer", pa.string(), nullable=False),  # bronze | silver | gold: the step that rejected it
        pa.field("reason", pa.string(), nullable=False),  # a reason code (kidjamo/lake/reasons.py)
        pa.field("field", pa.string()),  # the offending field path, e.g. vitals.spo2
        pa.field("detail", pa.string(), nullable=False),  # human-readable: expected and got
        pa.field("device_id", pa.string()),
        pa.field("measured_at", TS),
        pa.field("original_text", pa.string(), nullable=False),
        pa.field("raw_file", pa.string(), nullable=False),
        pa.field("record_index", pa.int32(), nullable=False),
        pa.field("record_hash", pa.string()),
        pa.field("arrival_minute", TS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

#: Silver = bronze + registry enrichment + derived indices, scores and quality flags.
SILVER = pa.schema(
    [
        *BRONZE,
        pa.field("age_years", pa.float64()),
        pa.field("age_band", pa.string()),  # PEWS band id (transforms/clinical)
        pa.field("genotype", pa.string()),
        pa.field("care_team", pa.string()),
        pa.field("spo2_baseline", pa.float64()),
        pa.field("heart_rate_baseline", pa.float64()),
        pa.field("temperature_baseline", pa.float64()),
        pa.field("hydration_baseline", pa.float64()),
        pa.field("news2_partial", pa.int16()),  # adults only, else null
        pa.field("news2_max_parameter", pa.int16()),  # the highest single-parameter score
        pa.field("heat_index_c", pa.float64()),  # NOAA heat index; null when humidity is absent (unknown)
        pa.field("heat_index_unknown", pa.bool_()),  # no humidity measured: the heat index cannot be known
        pa.field("physiological_strain_index", pa.float64()),
        pa.field("spo2_low_confidence", pa.bool_(), nullable=False),  # SpO2 < 70 (ISO 80601-2-61)
        pa.field("low_battery", pa.bool_(), nullable=False),
        pa.field("weak_signal", pa.bool_(), nullable=False),
        pa.field("delay_seconds", pa.float64(), nullable=False),  # arrival minute end - measured_at
        pa.field("is_late", pa.bool_(), nullable=False),
    ]
)

#: Gold: one row per arrival minute, patient and measured minute.
GOLD = pa.schema(
    [
        pa.field("arrival_minute", TS, nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("minute", TS, nullable=False),
        pa.field("readings", pa.int32(), nullable=False),
        pa.field("spo2_min", pa.float64()),
        pa.field("spo2_mean", pa.float64()),
        pa.field("heart_rate_mean", pa.float64()),
        pa.field("heart_rate_max", pa.float64()),
        pa.field("temperature_max", pa.float64()),
        pa.field("respiratory_rate_max", pa.float64()),
        pa.field("hydration_min", pa.float64()),
        pa.field("pain_max", pa.int16()),
        pa.field("activity_max", pa.int16()),
        pa.field("ambient_temp_max", pa.float64()),
        pa.field("battery_min", pa.float64()),
        pa.field("news2_max", pa.int16()),
        pa.field("spo2_baseline", pa.float64()),
        pa.field("age_band", pa.string()),
        pa.field("is_late", pa.bool_(), nullable=False),
    ]
)

