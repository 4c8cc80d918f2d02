"""What the care-team pages show, read on a connection switched to the clinician's role.

Every query here runs under row-level security as the clinician (``SET ROLE``): none of them
filters by care team itself, so a mistake here cannot show another team's patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from transforms.clinical import scores
from transforms.clinical.rules import RuleSet

VITALS = ("spo2", "heart_rate", "temperature", "respiratory_rate", "hydration_pct", "pain_scale")
#: A change larger than this between the latest reading and the mean of the 5-20 minutes before it
#: draws a trend arrow (project choice: about the noise of a wearable's reading).
TREND_STEPS = {"spo2": 1.0, "heart_rate": 5.0, "temperature": 0.2, "respiratory_rate": 2.0, "hydration_pct": 2.0,
               "pain_scale": 1.0}
ADULT_YEARS = 16  # NEWS2 is for adults (CLINICAL.md); children get the partial PEWS of heart and breathing rates


@dataclass(frozen=True)
class Window:
    """A patient-page period and the bucket its chart averages readings over."""

    name: str
    length: timedelta
    bucket: timedelta


WINDOWS = {
    "6h": Window("6h", timedelta(hours=6), timedelta(minutes=1)),
    "24h": Window("24h", timedelta(hours=24), timedelta(minutes=5)),
    "7d": Window("7d", timedelta(days=7), timedelta(minutes=30)),
}

_BOARD = """
WITH open_alerts AS (
    SELECT patient_id,
           count(*) FILTER (WHERE severity = 'critical' AND status = 'open') AS open_critical,
           count(*) FILTER (WHERE severity = 'high' AND status = 'open') AS open_high,
           json_agg(json_build_object('alert_id', alert_id, 'rule_id', rule_id, 'severity', severity, 'status', status,
                                      'title', evidence -> 'rule' ->> 'title', 'opened_at', opened_at)
                    ORDER BY kidjamo.severity_rank(severity) DESC, opened_at) AS alerts
    FROM kidjamo.alerts WHERE status <> 'resolved' GROUP BY patient_id
), latest_device AS (
    SELECT DISTINCT ON (patient_id) patient_id, device_id, last_measured_at, battery_level, low_battery
    FROM kidjamo.care_device_state ORDER BY patient_id, last_measured_at DESC
)
SELECT p.patient_id, p.birth_date, p.genotype, p.care_team,
       coalesce(a.open_critical, 0) AS open_critical, coalesce(a.open_high, 0) AS open_high,
       coalesce(a.alerts, '[]'::json) AS alerts,
       d.device_id, d.last_measured_at, d.battery_level, d.low_battery,
       m.spo2, m.heart_rate, m.temperature, m.respiratory_rate, m.hydration_pct, m.pain_scale,
       m.news2_partial, m.age_years, m.age_band,
       r.spo2 AS before_spo2, r.heart_rate AS before_heart_rate, r.temperature AS before_temperature,
       r.respiratory_rate AS before_respiratory_rate, r.hydration_pct AS before_hydration_pct,
       r.pain_scale AS before_pain_scale
FROM kidjamo.patients AS p
LEFT JOIN open_alerts AS a USING (patient_id)
LEFT JOIN latest_device AS d USING (patient_id)
LEFT JOIN LATERAL (
    SELECT spo2, heart_rate, temperature, respiratory_rate, hydration_pct, pain_scale, news2_partial, age_years, age_band
    FROM kidjamo.measurements AS m
    WHERE m.device_id = d.device_id AND m.measured_at = d.last_measured_at
) AS m ON true
LEFT JOIN LATERAL (
    SELECT avg(spo2) AS spo2, avg(heart_rate) AS heart_rate, avg(temperature) AS temperature,
           avg(respiratory_rate) AS respiratory_rate, avg(hydration_pct) AS hydration_pct, avg(pain_scale) AS pain_scale
    FROM kidjamo.measurements AS r
    WHERE r.device_id = d.device_id
      AND r.measured_at >= d.last_measured_at - interval '20 minutes' AND r.measured_at < d.last_measured_at - interval '5 minutes'
) AS r ON true
"""


def _rows(cursor) -> list[dict]:
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _trend(latest, before, step: float) -> str | None:
    if latest is None or before is None:
        return None
    change = float(latest) - float(before)
    return "rising" if change >= step else "falling" if change <= -step else "steady"


def ward_board(connection, *, now: datetime, rules: RuleSet, silent_minutes: float = 5.0) -> list[dict]:
    """The clinician's patients, most urgent first: open critical alerts, open high alerts, then NEWS2/PEWS.

    Each row has the latest vitals with a trend (``rising``/``falling``/``steady`` against the
    mean of the 5-20 minutes before), the minutes since the last reading (``silent`` past the
    sensor_silent rule's minutes), battery and the open alerts.
    """
    patients = _rows(connection.execute(_BOARD))
    if not patients:
        return []
    frame = pd.DataFrame(patients)
    # Partial PEWS (heart and breathing rates against the age band) for children, NEWS2 for adults.
    bands = frame["age_band"].astype("string")
    pews = (scores.heart_rate_pews_band(frame["heart_rate"].astype("float64"), bands, rules)["pews_subscore"]
            .astype("Float64").fillna(0)
            + scores.respiratory_rate_pews_band(frame["respiratory_rate"].astype("float64"), bands, rules)["pews_subscore"]
            .astype("Float64").fillna(0))
    adult = frame["age_years"].astype("float64").fillna(0).to_numpy() >= ADULT_YEARS
    news2 = frame["news2_partial"].astype("float64").to_numpy()
    has_vitals = frame["heart_rate"].notna().to_numpy()
    score = np.where(adult, news2, pews.astype("float64").to_numpy())
    for row, value, is_adult, measured in zip(patients, score, adult, has_vitals):
        row["score"] = None if not measured or np.isnan(value) else int(value)
        row["score_name"] = "NEWS2" if is_adult else "PEWS"
        row["trends"] = {vital: _trend(row[vital], row[f"before_{vital}"], TREND_STEPS[vital]) for vital in VITALS}
        seen = row["last_measured_at"]
        row["minutes_since"] = None if seen is None else max(0.0, (now - seen).total_seconds() / 60)
        row["silent"] = seen is None or row["minutes_since"] > silent_minutes
    patients.sort(key=lambda row: (-row["open_critical"], -row["open_high"],
                                   -(row["score"] if row["score"] is not None else -1), row["patient_id"]))
    return patients


def patient(connection, patient_id: str) -> dict | None:
    """The patient's registry row, or None when it is unknown or not in the clinician's care teams."""
    rows = _rows(connection.execute(
        "SELECT patient_id, birth_date, sex, genotype, care_team, baseline_spo2 FROM kidjamo.patients WHERE patient_id = %s",
        (patient_id,)))
    return rows[0] if rows else None


def latest_reading(connection, patient_id: str) -> dict | None:
    """The patient's latest reading with its age band and baselines (what their thresholds depend on)."""
    rows = _rows(connection.execute(
        """
        SELECT m.measured_at, m.spo2, m.heart_rate, m.temperature, m.respiratory_rate, m.hydration_pct, m.pain_scale,
               m.age_years, m.age_band, m.spo2_baseline, m.hydration_baseline, m.battery_level, m.news2_partial
        FROM kidjamo.care_device_state AS d
        JOIN kidjamo.measurements AS m ON m.device_id = d.device_id AND m.measured_at = d.last_measured_at
        WHERE d.patient_id = %s ORDER BY m.measured_at DESC LIMIT 1
        """, (patient_id,)))
    return rows[0] if rows else None


def window_bounds(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the window ending with the bucket that holds ``now`` (buckets on round times)."""
    epoch = datetime(2000, 1, 1, tzinfo=now.tzinfo)
    end = now + (epoch - now) % window.bucket
    return end - window.length, end


def vital_series(connection, patient_id: str, *, window: Window, start: datetime, end: datetime) -> pd.DataFrame:
    """Mean, min and max of each vital per bucket over [start, end); a bucket without a reading is a row of NaN (a gap)."""
    cursor = connection.execute(
        """
        SELECT date_bin(%(bucket)s, measured_at, %(start)s) AS bucket, count(*) AS readings,
               avg(spo2) AS spo2, min(spo2) AS spo2_min, max(spo2) AS spo2_max,
               avg(heart_rate) AS heart_rate, min(heart_rate) AS heart_rate_min, max(heart_rate) AS heart_rate_max,
               avg(temperature) AS temperature, min(temperature) AS temperature_min, max(temperature) AS temperature_max,
               avg(respiratory_rate) AS respiratory_rate, min(respiratory_rate) AS respiratory_rate_min,
               max(respiratory_rate) AS respiratory_rate_max,
               avg(hydration_pct) AS hydration_pct, min(hydration_pct) AS hydration_pct_min, max(hydration_pct) AS hydration_pct_max,
               avg(pain_scale) AS pain_scale, min(pain_scale) AS pain_scale_min, max(pain_scale) AS pain_scale_max
        FROM kidjamo.measurements
        WHERE patient_id = %(patient_id)s AND measured_at >= %(start)s AND measured_at < %(end)s
        GROUP BY 1 ORDER BY 1
        """,
        {"bucket": window.bucket, "start": start, "end": end, "patient_id": patient_id})
    names = [column.name for column in cursor.description]
    frame = pd.DataFrame(cursor.fetchall(), columns=names)
    every_bucket = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=window.bucket, inclusive="left", name="bucket")
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    values = frame.set_index("bucket").astype("float64")
    return values.reindex(every_bucket).reset_index()


def gaps(series: pd.DataFrame) -> list[tuple[datetime, datetime]]:
    """Runs of buckets without a reading: (first bucket, end of last bucket)."""
    missing = series["readings"].isna().to_numpy()
    if not missing.any():
        return []
    step = series["bucket"].iloc[1] - series["bucket"].iloc[0] if len(series) > 1 else timedelta(0)
    runs, start = [], None
    for at, empty in zip(series["bucket"], missing):
        if empty and start is None:
            start = at
        elif not empty and start is not None:
            runs.append((start.to_pydatetime(), at.to_pydatetime()))
            start = None
    if start is not None:
        runs.append((start.to_pydatetime(), (series["bucket"].iloc[-1] + step).to_pydatetime()))
    return runs


def patient_alerts(connection, patient_id: str, *, start: datetime, end: datetime) -> list[dict]:
    """Alerts of the patient alive at some point of [start, end)."""
    return _rows(connection.execute(
        """
        SELECT alert_id, rule_id, severity, status, first_reading_at, last_reading_at, opened_at, acknowledged_by,
               resolved_at, evidence -> 'rule' ->> 'title' AS title
        FROM kidjamo.alerts
        WHERE patient_id = %s AND first_reading_at < %s AND (resolved_at IS NULL OR resolved_at >= %s)
        ORDER BY first_reading_at
        """, (patient_id, end, start)))


def quarantine_counts(connection, patient_id: str, *, start: datetime, end: datetime) -> list[dict]:
    """Readings of the patient's devices quarantined in [start, end) (by arrival), per reason."""
    return _rows(connection.execute(
        """
        SELECT reason, count(*) AS readings FROM kidjamo.care_quarantine
        WHERE patient_id = %s AND arrival_minute >= %s AND arrival_minute < %s
        GROUP BY reason ORDER BY count(*) DESC, reason
        """, (patient_id, start, end)))


def alert_queue(connection) -> list[dict]:
    """Open and acknowledged alerts, open first, most severe first, oldest first."""
    return _rows(connection.execute(
        """
        SELECT alert_id, patient_id, rule_id, rule_version, severity, status, opened_at, first_reading_at,
               last_reading_at, reading_count, acknowledged_by, acknowledged_at, evidence, is_late, source
        FROM kidjamo.alerts WHERE status <> 'resolved'
        ORDER BY status = 'open' DESC, kidjamo.severity_rank(severity) DESC, opened_at
        """))


def alert(connection, alert_id: int) -> dict | None:
    """One alert, or None when it is unknown or not in the clinician's care teams."""
    rows = _rows(connection.execute(
        "SELECT alert_id, patient_id, rule_id, severity, status FROM kidjamo.alerts WHERE alert_id = %s", (alert_id,)))
    return rows[0] if rows else None


def thresholds(latest: dict | None, rules: RuleSet) -> dict[str, list[tuple[str, float]]]:
    """The patient's own alert thresholds per vital (by value), from the rules, their age band and their baselines."""
    lines: dict[str, list[tuple[str, float]]] = {vital: [] for vital in VITALS}
    lines["spo2"].append((rules["hypoxia"].id, rules["hypoxia"].thresholds.spo2_at_most))
    lines["spo2"].append((rules["hypoxia_severe"].id, rules["hypoxia_severe"].thresholds.spo2_below))
    infant = latest is not None and latest.get("age_years") is not None and \
        latest["age_years"] < rules["fever_infant"].thresholds.age_below_years
    fever = rules["fever_infant"].thresholds.temperature_at_least if infant else rules["fever"].thresholds.temperature_at_least
    lines["temperature"].append(("fever_infant" if infant else "fever", fever))
    cold = rules["hypothermia"].thresholds
    young_infant = latest is not None and latest.get("age_years") is not None and latest["age_years"] < cold.infant_age_below_years
    lines["temperature"].append((rules["hypothermia"].id, cold.infant_temperature_below if young_infant else cold.temperature_at_most))
    lines["pain_scale"].append((rules["pain_severe"].id, rules["pain_severe"].thresholds.pain_at_least))
    lines["hydration_pct"].append((rules["dehydration"].id, rules["dehydration"].thresholds.hydration_below))
    if latest is None:
        return {vital: sorted(values, key=lambda line: line[1]) for vital, values in lines.items()}
    if latest.get("spo2_baseline") is not None:
        drop = rules["spo2_drop"].thresholds
        lines["spo2"].append((rules["spo2_drop"].id, min(drop.spo2_below, latest["spo2_baseline"] - drop.drop_at_least)))
    if latest.get("hydration_baseline") is not None:
        lines["hydration_pct"].append(
            (rules["dehydration"].id, latest["hydration_baseline"] - rules["dehydration"].thresholds.drop_at_least))
    band_id = latest.get("age_band")
    if isinstance(band_id, str):
        band = next((band for band in rules.age_bands if band.id == band_id), None)
        for vital in ("heart_rate", "respiratory_rate") if band is not None else ():
            low, high = getattr(band, vital).normal
            rule_id = "heart_rate" if vital == "heart_rate" else "tachypnoea"
            lines[vital].extend([(rule_id, low), (rule_id, high)])
    return {vital: sorted(values, key=lambda line: line[1]) for vital, values in lines.items()}
