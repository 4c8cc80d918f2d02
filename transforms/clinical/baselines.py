"""Personal baselines of SpO2, heart rate, temperature and hydration (docs/clinical-rules.md, "Baselines").

A patient's baseline is the median of their own readings of the last ``window_days`` (7) taken
outside alert episodes, when those readings cover at least ``min_hours_of_data`` (6 h) of distinct
minutes. :func:`recompute_baselines` stores it in ``kidjamo.patient_baselines`` (on a schedule);
:func:`patient_baselines` reads it with the fallbacks:

- SpO2: stored personal baseline, else the registry ``baseline_spo2``, else the genotype default
  (HbSS/HbSB0 96 %, HbSC/HbSB+ 98 %; see ``rules.yaml``).
- heart rate: personal baseline, else the middle of the age band's normal range (PEWS).
- temperature: personal baseline, else ``typical_temperature`` (36.8 °C).
- hydration: personal baseline, else ``typical_hydration`` (80 %). No population value exists for
  a wearable hydration index: this is a project choice until the patient's own baseline exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from kidjamo.warehouse.database import connect
from transforms.clinical import scores
from transforms.clinical.rules import RuleSet

BASELINE_COLUMNS = ["spo2_baseline", "heart_rate_baseline", "temperature_baseline", "hydration_baseline"]
# Sensor-health rules do not make a reading clinically abnormal: their episodes stay in baselines.
NON_CLINICAL_RULES = ("sensor_flatline", "sensor_battery", "sensor_silent")


def genotype_default_spo2(genotype: pd.Series, rules: RuleSet) -> pd.Series:
    """The genotype's default SpO2 baseline (unknown genotypes use the ``other`` value)."""
    defaults = rules.baselines.genotype_spo2_default
    values = pd.Series(genotype, dtype="object").map(defaults)
    return values.fillna(defaults["other"]).astype("float64")


def typical_heart_rate(age_band_ids: pd.Series, rules: RuleSet) -> pd.Series:
    """Mid-normal heart rate of each PEWS age band (NaN when the band is unknown)."""
    mapping = {band.id: band.typical_heart_rate for band in rules.age_bands}
    return pd.Series(age_band_ids, dtype="object").map(mapping).astype("float64")


def stored_baselines(database_url: str) -> pd.DataFrame:
    """The personal baselines stored by :func:`recompute_baselines`, one row per patient."""
    with connect(database_url) as connection:
        cursor = connection.execute(
            "SELECT patient_id, spo2_baseline, heart_rate_baseline, temperature_baseline, hydration_baseline "
            "FROM kidjamo.patient_baselines"
        )
        rows = cursor.fetchall()
    frame = pd.DataFrame(rows, columns=["patient_id", *BASELINE_COLUMNS])
    return frame.astype({column: "float64" for column in BASELINE_COLUMNS})


def patient_baselines(
    database_url: str, registry: pd.DataFrame, *, rules: RuleSet, at: datetime | None = None
) -> pd.DataFrame:
    """One row per registry patient: ``patient_id`` and the four baselines, with their fallbacks.

    ``at`` is the time the age-band fallback is judged at (pass the interval start; default now).
    """
    patients = registry.drop_duplicates("patient_id")[["patient_id", "birth_date", "genotype", "baseline_spo2"]]
    frame = patients.merge(stored_baselines(database_url), on="patient_id", how="left")
    moment = at or datetime.now(timezone.utc)
    ages = scores.age_years(frame["birth_date"], pd.Series(moment, index=frame.index))
    bands = scores.age_band(ages, rules)
    registry_spo2 = pd.to_numeric(frame["baseline_spo2"], errors="coerce").astype("float64")
    frame["spo2_baseline"] = (
        frame["spo2_baseline"].fillna(registry_spo2).fillna(genotype_default_spo2(frame["genotype"], rules))
    )
    frame["heart_rate_baseline"] = frame["heart_rate_baseline"].fillna(typical_heart_rate(bands, rules))
    frame["temperature_baseline"] = frame["temperature_baseline"].fillna(rules.baselines.typical_temperature)
    frame["hydration_baseline"] = frame["hydration_baseline"].fillna(rules.baselines.typical_hydration)
    return frame[["patient_id", *BASELINE_COLUMNS]].reset_index(drop=True)


_RECOMPUTE = """
WITH episodes AS (
    SELECT patient_id, first_reading_at, last_reading_at
    FROM kidjamo.alerts
    WHERE rule_id <> ALL(%(non_clinical)s) AND last_reading_at >= %(window_start)s
      AND first_reading_at < %(window_end)s
),
readings AS (
    SELECT m.patient_id, m.measured_at, m.spo2, m.heart_rate, m.temperature, m.hydration_pct
    FROM kidjamo.measurements AS m
    WHERE m.measured_at >= %(window_start)s AND m.measured_at < %(window_end)s
      AND NOT EXISTS (
          SELECT 1 FROM episodes AS e
          WHERE e.patient_id = m.patient_id AND m.measured_at BETWEEN e.first_reading_at AND e.last_reading_at)
),
computed AS (
    SELECT patient_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY spo2) AS spo2_baseline,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY heart_rate) AS heart_rate_baseline,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY temperature) AS temperature_baseline,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY hydration_pct) AS hydration_baseline,
           count(*) AS readings,
           count(DISTINCT date_trunc('minute', measured_at)) / 60.0 AS hours_of_data
    FROM readings
    GROUP BY patient_id
),
qualified AS (
    SELECT c.* FROM computed AS c JOIN kidjamo.patients AS p USING (patient_id)
    WHERE c.hours_of_data >= %(min_hours)s
),
removed AS (
    DELETE FROM kidjamo.patient_baselines AS b
    WHERE NOT EXISTS (SELECT 1 FROM qualified AS q WHERE q.patient_id = b.patient_id)
    RETURNING b.patient_id
),
upserted AS (
    INSERT INTO kidjamo.patient_baselines AS b (
        patient_id, spo2_baseline, heart_rate_baseline, temperature_baseline, hydration_baseline,
        readings, hours_of_data, window_start, window_end, computed_at)
    SELECT patient_id, spo2_baseline, heart_rate_baseline, temperature_baseline, hydration_baseline,
           readings, hours_of_data, %(window_start)s, %(window_end)s, %(window_end)s
    FROM qualified
    ON CONFLICT (patient_id) DO UPDATE SET
        spo2_baseline = excluded.spo2_baseline, heart_rate_baseline = excluded.heart_rate_baseline,
        temperature_baseline = excluded.temperature_baseline, hydration_baseline = excluded.hydration_baseline,
        readings = excluded.readings, hours_of_data = excluded.hours_of_data,
        window_start = excluded.window_start, window_end = excluded.window_end, computed_at = excluded.computed_at
    RETURNING b.patient_id
)
SELECT (SELECT count(*) FROM computed), (SELECT count(*) FROM upserted), (SELECT count(*) FROM removed)
"""


def recompute_baselines(database_url: str, as_of: datetime, *, rules: RuleSet) -> dict:
    """Recompute and store every patient's personal baseline from the window ending at ``as_of``.

    Patients without enough data lose any stored baseline (their fallbacks apply). Returns counts:
    ``patients_with_readings``, ``stored``, ``removed``.
    """
    window_end = as_of
    window_start = as_of - timedelta(days=rules.baselines.window_days)
    with connect(database_url) as connection:
        seen, stored, removed = connection.execute(
            _RECOMPUTE,
            {
                "non_clinical": list(NON_CLINICAL_RULES),
                "window_start": window_start,
                "window_end": window_end,
                "min_hours": rules.baselines.min_hours_of_data,
            },
        ).fetchone()
    return {"patients_with_readings": seen, "stored": stored, "removed": removed,
            "window_start": window_start.isoformat(), "window_end": window_end.isoformat()}
