"""What the rules need beyond the batch: recent readings of the same devices, and when each device
last reported (``kidjamo.device_last_seen``, behind the ``sensor_silent`` rule)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from kidjamo.warehouse.bulk import copy_out, stage
from transforms.alerts.evaluate import CANDIDATE_COLUMNS, evidence_record
from transforms.clinical.rules import RuleSet

HISTORY_COLUMNS = ["device_id", "patient_id", "measured_at", "spo2", "heart_rate", "pain_scale", "age_years"]


def _history_lookback(rules: RuleSet) -> timedelta:
    # Flatline needs its window (and a minute of slack).
    return timedelta(minutes=rules["sensor_flatline"].thresholds.minutes + 1)


def _pain_lookback(rules: RuleSet) -> timedelta:
    # Severe pain counts readings within its window; flatline's window is read for the same device too.
    return max(timedelta(minutes=rules["pain_severe"].thresholds.window_minutes), _history_lookback(rules))


def read_history(connection, silver: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Recent readings from kidjamo.measurements that the cross-batch rules need, and only those.

    For each device of the batch, the look-back window before its first batch reading is read
    only when it can matter: its previous reading has the same SpO2 or heart rate as its first
    batch reading (a flatline may have started before the batch), or the batch shows severe pain
    (the pain window's rule). The previous reading comes from the alert step's per-device
    state (``kidjamo.device_last_seen``: latest measured_at, SpO2 and heart rate), one join for the
    whole batch; only devices without state, or whose batch does not follow their state (late
    readings, a re-run), take an index probe into ``kidjamo.measurements``. At a 30 s cadence this
    keeps the read small however much history is stored.
    """
    if silver.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    ordered = silver.sort_values("measured_at", kind="stable")
    first = ordered.drop_duplicates("device_id")
    pain_threshold = rules["pain_severe"].thresholds.pain_at_least
    pain = pd.to_numeric(silver["pain_scale"], errors="coerce") if "pain_scale" in silver else pd.Series(np.nan, index=silver.index)
    painful = set(silver.loc[(pain >= pain_threshold).fillna(False), "device_id"])
    lookback = np.where(first["device_id"].isin(painful), _pain_lookback(rules), _history_lookback(rules))
    since = first["measured_at"] - pd.to_timedelta(lookback).to_numpy()

    batch = pa.table({
        "device_id": arrow_strings(first["device_id"]),
        "since": arrow_times(since), "until": arrow_times(first["measured_at"]),
        "spo2": arrow_floats(first, "spo2"), "heart_rate": arrow_floats(first, "heart_rate"),
        "painful": pa.array(first["device_id"].isin(painful).to_numpy(), pa.bool_()),
    })
    stage(connection, "history_batch", "device_id text, since timestamptz, until timestamptz, spo2 float8,"
                                         " heart_rate float8, painful boolean", batch)
    history = copy_out(connection, """
        WITH needed AS (
            SELECT b.device_id, b.since, b.until FROM history_batch AS b
            LEFT JOIN kidjamo.device_last_seen AS s ON s.device_id = b.device_id
            WHERE b.painful
               OR (s.last_measured_at >= b.since AND s.last_measured_at < b.until
                   AND (s.last_spo2 = b.spo2 OR s.last_heart_rate = b.heart_rate))
               OR ((s.device_id IS NULL OR s.last_measured_at >= b.until) AND EXISTS (
                   SELECT 1 FROM (SELECT p.spo2, p.heart_rate FROM kidjamo.measurements AS p
                                  WHERE p.device_id = b.device_id AND p.measured_at >= b.since AND p.measured_at < b.until
                                  ORDER BY p.measured_at DESC LIMIT 1) AS previous
                   WHERE previous.spo2 = b.spo2 OR previous.heart_rate = b.heart_rate))
        )
        SELECT m.device_id, m.patient_id, m.measured_at, m.spo2, m.heart_rate, m.pain_scale, m.age_years
        FROM needed AS n
        JOIN kidjamo.measurements AS m ON m.device_id = n.device_id AND m.measured_at >= n.since AND m.measured_at < n.until
        """, {"device_id": pa.string(), "patient_id": pa.string(), "measured_at": pa.timestamp("us", tz="UTC"),
              "spo2": pa.float64(), "heart_rate": pa.float64(), "pain_scale": pa.float64(), "age_years": pa.float64()})
    connection.execute("DROP TABLE history_batch")
    history["measured_at"] = pd.to_datetime(history["measured_at"], utc=True)
    return history


def arrow_strings(values) -> pa.Array:
    return pa.array(pd.Series(values).to_numpy(dtype=object), pa.string(), from_pandas=True)


def arrow_floats(frame: pd.DataFrame, column: str) -> pa.Array:
    """A numeric column as float64 (NaN where missing or not numeric; all NaN when the column is absent)."""
    values = pd.to_numeric(frame[column], errors="coerce") if column in frame else pd.Series(np.nan, index=frame.index)
    return pa.array(values.astype("float64").to_numpy(), pa.float64(), from_pandas=True)


def arrow_times(values) -> pa.Array:
    return pa.array(pd.to_datetime(pd.Series(values), utc=True).to_numpy(dtype="datetime64[us]"),
                    pa.timestamp("us", tz="UTC"))


def silver_frame(silver: pa.Table | pd.DataFrame) -> pd.DataFrame:
    # pandas copies on write: a shallow copy keeps the caller's frame as it was.
    frame = silver.to_pandas() if isinstance(silver, pa.Table) else silver.copy(deep=False)
    if len(frame):
        frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
    return frame


def update_last_seen(connection, frame: pd.DataFrame) -> int:
    if frame.empty:
        return 0
    # The latest reading of each device (its SpO2 and heart rate are the state read_history uses).
    latest = frame.sort_values("measured_at", kind="stable").drop_duplicates("device_id", keep="last")
    stage(connection, "last_seen_batch", "device_id text, patient_id text, last_measured_at timestamptz,"
                                         " last_spo2 real, last_heart_rate real", pa.table({
        "device_id": arrow_strings(latest["device_id"]), "patient_id": arrow_strings(latest["patient_id"]),
        "last_measured_at": arrow_times(latest["measured_at"]), "last_spo2": arrow_floats(latest, "spo2"),
        "last_heart_rate": arrow_floats(latest, "heart_rate")}))
    connection.execute(
        """
        INSERT INTO kidjamo.device_last_seen AS s (device_id, patient_id, last_measured_at, last_spo2, last_heart_rate)
        SELECT device_id, patient_id, last_measured_at, last_spo2, last_heart_rate FROM last_seen_batch
        ON CONFLICT (device_id) DO UPDATE SET
            last_measured_at = GREATEST(s.last_measured_at, excluded.last_measured_at),
            patient_id = CASE WHEN excluded.last_measured_at >= s.last_measured_at THEN excluded.patient_id ELSE s.patient_id END,
            last_spo2 = CASE WHEN excluded.last_measured_at >= s.last_measured_at THEN excluded.last_spo2 ELSE s.last_spo2 END,
            last_heart_rate = CASE WHEN excluded.last_measured_at >= s.last_measured_at
                                   THEN excluded.last_heart_rate ELSE s.last_heart_rate END,
            updated_at = now()
        """
    )
    connection.execute("DROP TABLE last_seen_batch")
    return len(latest)


def silent_device_candidates(connection, as_of: datetime, rules: RuleSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``sensor_silent`` candidates: active devices whose last reading is older than the silence limit."""
    t = rules["sensor_silent"].thresholds
    rows = connection.execute(
        """
        SELECT d.device_id, d.patient_id, s.last_measured_at,
               EXISTS (SELECT 1 FROM kidjamo.alerts AS a WHERE a.patient_id = d.patient_id AND a.status <> 'resolved'
                       AND kidjamo.severity_rank(a.severity) >= kidjamo.severity_rank(%(open_at_least)s)
                       AND a.rule_id <> 'sensor_silent') AS has_open_alert
        FROM kidjamo.devices AS d JOIN kidjamo.device_last_seen AS s USING (device_id)
        WHERE d.active AND s.last_measured_at < %(silent_since)s AND s.last_measured_at >= %(lookback)s
        """,
        {"silent_since": as_of - timedelta(minutes=t.silent_minutes), "lookback": as_of - timedelta(hours=t.lookback_hours),
         "open_at_least": t.open_alert_at_least},
    ).fetchall()
    if not rows:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS), pd.DataFrame(columns=["patient_id", "rule_id", "device_id", "measured_at"])
    rule = rules["sensor_silent"]
    records, matches = [], []
    for device_id, patient_id, last_seen, has_open_alert in rows:
        silent_minutes = (as_of - last_seen).total_seconds() / 60
        severity = t.with_open_alert_severity if has_open_alert else rule.severity
        evidence = evidence_record(
            rule, rules,
            values={"last_reading_at": last_seen.isoformat(), "silent_minutes": round(silent_minutes, 1),
                    "patient_has_open_alert": bool(has_open_alert)},
            thresholds=t.model_dump(), baseline={}, device_id=device_id, measured_at=last_seen.isoformat(),
            is_late=False, delay_seconds=0.0,
        )
        records.append({"patient_id": patient_id, "rule_id": rule.id, "rule_version": str(rule.version),
                        "severity": severity, "superseded": False, "first_reading_at": last_seen,
                        "last_reading_at": last_seen, "reading_count": 1, "device_id": device_id, "is_late": False,
                        "delay_seconds": 0.0, "evidence": evidence,
                        "lineage": [{"device_id": device_id, "measured_at": last_seen.isoformat()}]})
        matches.append({"patient_id": patient_id, "rule_id": rule.id, "device_id": device_id, "measured_at": last_seen})
    return pd.DataFrame(records, columns=CANDIDATE_COLUMNS), pd.DataFrame(matches)
