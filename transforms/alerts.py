"""Clinical alerts: rules over each batch and its history, the alert lifecycle, and notifications.

The steps, in the order the pipeline runs them for an interval:

1. :func:`evaluate_rules` (pure): every rule of ``transforms/clinical/rules.yaml`` over the batch's
   silver readings, with recent history for the rules that span batches (pain on consecutive
   readings, flatline). One candidate per (patient, rule) with its evidence and lineage.
2. :func:`raise_alerts`: candidates become alerts in ``kidjamo.alerts`` — one open alert per
   patient and rule, updated by new readings; a higher severity escalates it (an event row); a
   rule quiet for ``alert_quiet_minutes`` resolves it; silent devices raise ``sensor_silent``.
   Each matching reading is attached once (``kidjamo.alert_readings``), so re-running or
   backfilling an interval changes nothing and queues nothing.
3. :func:`escalate`: critical alerts unacknowledged after 5 / 15 minutes get an escalation event.
4. :func:`deliver_notifications`: each (event, channel) notification is claimed with
   ``FOR UPDATE SKIP LOCKED``, sent, and every attempt recorded; failures retry with backoff.

:func:`raise_fast_path_alert` lets the ingestion service open a critical alert within seconds of
a reading arriving; the minute batch later attaches to the same open alert.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kidjamo import notify
from kidjamo.database import connect
from kidjamo.settings import Settings, get_settings
from transforms.clinical import scores
from transforms.clinical.matching import EVIDENCE_VALUES, MATCHERS
from transforms.clinical.rules import SEVERITY_RANK, RuleSet, default_rules
from transforms.load import copy_csv

log = logging.getLogger(__name__)

#: Columns the rules read; missing ones are treated as not measured.
READING_COLUMNS = {
    "spo2": "float64", "heart_rate": "float64", "temperature": "float64", "ambient_temp": "float64",
    "respiratory_rate": "float64", "hydration_pct": "float64", "activity_level": "float64", "pain_scale": "float64",
    "ambient_humidity": "float64", "battery_level": "float64", "age_years": "float64",
    "spo2_baseline": "float64", "heart_rate_baseline": "float64", "temperature_baseline": "float64",
    "hydration_baseline": "float64", "heat_index_c": "float64", "delay_seconds": "float64",
}
HISTORY_COLUMNS = ["device_id", "patient_id", "measured_at", "spo2", "heart_rate", "pain_scale", "age_years"]
LINEAGE_IN_ALERT = 20  # the alert row keeps the latest readings; alert_readings keeps all of them
CANDIDATE_COLUMNS = ["patient_id", "rule_id", "rule_version", "severity", "superseded", "first_reading_at",
                     "last_reading_at", "reading_count", "device_id", "is_late", "delay_seconds", "evidence", "lineage"]


# --- 1. rules over readings (pure) ------------------------------------------------------------------
def _prepare(silver: pd.DataFrame, history: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Batch and history readings in one frame, sorted by patient and time, with every rule input."""
    batch = silver.copy()
    batch["in_batch"] = True
    parts = [batch]
    if history is not None and len(history):
        past = history.copy()
        past["in_batch"] = False
        parts.append(past)
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else batch.reset_index(drop=True)
    frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
    # The batch may already be loaded into the measurements the history came from: keep the batch row.
    frame = frame.drop_duplicates(["device_id", "measured_at"], keep="first")
    frame = frame.sort_values(["patient_id", "measured_at", "device_id"], kind="stable").reset_index(drop=True)
    for column, dtype in READING_COLUMNS.items():
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(dtype) if column in frame else np.nan
    if "age_band" not in frame or frame["age_band"].isna().all():
        frame["age_band"] = scores.age_band(frame["age_years"], rules)
    frame["age_band"] = frame["age_band"].astype("string")
    if "news2_partial" not in frame or "news2_max_parameter" not in frame:
        frame = frame.join(scores.news2_partial(frame["respiratory_rate"], frame["spo2"], frame["heart_rate"],
                                                frame["temperature"], frame["age_years"]))
    for column, default in (("is_late", False), ("raw_file", None), ("record_index", None)):
        if column not in frame:
            frame[column] = default
    frame["is_late"] = frame["is_late"].fillna(False).astype(bool)
    frame["delay_seconds"] = frame["delay_seconds"].fillna(0.0)
    return frame


def match_readings(silver: pd.DataFrame, history: pd.DataFrame, *, rules: RuleSet | None = None) -> pd.DataFrame:
    """One row per (batch reading, matching rule): the reading's columns plus ``rule_id`` and ``severity``."""
    rules = rules or default_rules()
    frame = _prepare(silver, history, rules)
    matches = []
    for rule_id, matcher in MATCHERS.items():
        severity = matcher(frame, rules[rule_id], rules)
        hit = severity.notna() & frame["in_batch"]
        if hit.any():
            matched = frame.loc[hit].copy()
            matched["rule_id"] = rule_id
            matched["severity"] = severity[hit]
            matches.append(matched)
    if not matches:
        return frame.iloc[0:0].assign(rule_id=pd.Series(dtype="object"), severity=pd.Series(dtype="object"))
    return pd.concat(matches, ignore_index=True)


def _json_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 3)
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return value


def _thresholds(rule_id: str, band_id, rules: RuleSet) -> dict:
    thresholds = rules[rule_id].thresholds.model_dump()
    if rule_id in ("tachypnoea", "acs_pattern", "heart_rate") and isinstance(band_id, str):
        vital = "heart_rate" if rule_id == "heart_rate" else "respiratory_rate"
        thresholds[f"{vital}_band"] = {"age_band": band_id, **getattr(rules.band(band_id), vital).model_dump()}
    if rule_id == "acs_pattern":
        thresholds["spo2_drop"] = rules["spo2_drop"].thresholds.model_dump()
    if rule_id == "heat_dehydration":
        thresholds["dehydration"] = rules["dehydration"].thresholds.model_dump()
    return thresholds


def _rule_summary(rule_id: str, rules: RuleSet) -> dict:
    rule = rules[rule_id]
    return {"id": rule.id, "version": rule.version, "title": rule.title, "condition": rule.condition,
            "source": rule.source, "ruleset_version": rules.ruleset_version}


BASELINE_NAMES = ("spo2_baseline", "heart_rate_baseline", "temperature_baseline", "hydration_baseline")


def _evidences(worst: pd.DataFrame, rules: RuleSet) -> list[dict]:
    """Evidence of each candidate, from its most severe reading: values, thresholds, baseline."""
    thresholds_cache: dict[tuple, dict] = {}
    evidences = []
    needed = {"rule_id", "age_band", "device_id", "measured_at", "is_late", "delay_seconds", *BASELINE_NAMES,
              *(name for names in EVIDENCE_VALUES.values() for name in names)}
    for row in worst[[column for column in worst.columns if column in needed]].to_dict("records"):
        rule_id, band = row["rule_id"], row.get("age_band")
        band = band if isinstance(band, str) else None
        if (rule_id, band) not in thresholds_cache:
            thresholds_cache[(rule_id, band)] = _thresholds(rule_id, band, rules)
        evidences.append({
            "rule": _rule_summary(rule_id, rules),
            "values": {name: _json_value(row.get(name)) for name in EVIDENCE_VALUES.get(rule_id, [])},
            "thresholds": thresholds_cache[(rule_id, band)],
            "baseline": {name: _json_value(row.get(name)) for name in BASELINE_NAMES},
            "age_band": band,
            "device_id": row["device_id"],
            "measured_at": _json_value(row["measured_at"]),
            "is_late": bool(row["is_late"]),
            "delay_seconds": _json_value(row["delay_seconds"]),
        })
    return evidences


def candidates_from_matches(matches: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Group matches into one candidate per (patient, rule); mark candidates superseded by a sibling."""
    if matches.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    ordered = matches.assign(rank=matches["severity"].map(SEVERITY_RANK))
    keys = ["patient_id", "rule_id"]
    # Evidence comes from the most severe reading (the latest among equals); lateness from the latest.
    worst = ordered.sort_values(["rank", "measured_at"], ascending=[False, False], kind="stable").drop_duplicates(keys)
    newest_first = ordered.sort_values("measured_at", ascending=False, kind="stable")
    latest = newest_first.drop_duplicates(keys)
    summary = ordered.groupby(keys, sort=False).agg(
        first_reading_at=("measured_at", "min"), last_reading_at=("measured_at", "max"),
        reading_count=("measured_at", "size")).reset_index()
    kept = newest_first.groupby(keys, sort=False).head(LINEAGE_IN_ALERT)
    entries = [{"device_id": d, "measured_at": m.isoformat(), "raw_file": r, "record_index": _json_value(i)}
               for d, m, r, i in zip(kept["device_id"], kept["measured_at"], kept["raw_file"], kept["record_index"])]
    lineage: dict[tuple, list] = {}
    for key, entry in zip(zip(kept["patient_id"], kept["rule_id"]), entries):
        lineage.setdefault(key, []).append(entry)
    worst = worst.assign(evidence=_evidences(worst, rules))
    candidates = (
        summary.merge(worst[[*keys, "severity", "device_id", "evidence"]], on=keys)
        .merge(latest[[*keys, "is_late", "delay_seconds"]], on=keys)
    )
    candidates["lineage"] = [lineage[key] for key in zip(candidates["patient_id"], candidates["rule_id"])]
    candidates["rule_version"] = candidates["rule_id"].map({rule_id: str(rule.version) for rule_id, rule in rules.rules.items()})
    candidates["superseded"] = _superseded(candidates, rules)
    candidates["delay_seconds"] = candidates["delay_seconds"].astype("float64")
    return candidates[CANDIDATE_COLUMNS].sort_values(keys).reset_index(drop=True)


def _superseded(candidates: pd.DataFrame, rules: RuleSet) -> pd.Series:
    """True where another candidate of the same patient supersedes this rule (e.g. hypoxia_severe > hypoxia)."""
    pairs = pd.DataFrame([(rule.id, other) for rule in rules.rules.values() for other in rule.supersedes],
                         columns=["rule_id", "superseded_rule"])
    superseded = candidates[["patient_id", "rule_id"]].merge(pairs, on="rule_id")[["patient_id", "superseded_rule"]]
    flagged = candidates[["patient_id", "rule_id"]].merge(
        superseded.drop_duplicates().rename(columns={"superseded_rule": "rule_id"}).assign(flag=True),
        on=["patient_id", "rule_id"], how="left")
    return pd.Series(flagged["flag"].fillna(False).astype(bool).to_numpy(), index=candidates.index)


def evaluate_rules(silver: pd.DataFrame, history: pd.DataFrame | None, *, as_of: datetime,
                   rules: RuleSet | None = None) -> pd.DataFrame:
    """Candidates of the batch: one row per (patient, rule) that matched at least one batch reading.

    ``silver`` holds the batch's readings (columns of ``transforms.schema.SILVER``); ``history``
    recent readings of the same patients (columns of ``kidjamo.measurements``) for the rules that
    span batches. Columns: patient_id, rule_id, rule_version, severity (most severe matching
    reading), superseded (a more specific rule of the same patient matched too: it only updates an
    already open alert), first/last_reading_at, reading_count, device_id, is_late and
    delay_seconds (of the latest matching reading), evidence (values, thresholds, baseline) and
    lineage (raw_file, record_index of the latest readings), as_of.
    """
    rules = rules or default_rules()
    if silver is None or len(silver) == 0:
        return pd.DataFrame(columns=[*CANDIDATE_COLUMNS, "as_of"])
    candidates = candidates_from_matches(match_readings(silver, history, rules=rules), rules)
    candidates["as_of"] = as_of
    return candidates


# --- 2. alerts in the database ----------------------------------------------------------------------
def _history_lookback(rules: RuleSet) -> timedelta:
    # Flatline needs its window; three consecutive pain readings need a minute at a 30 s cadence.
    return timedelta(minutes=rules["sensor_flatline"].thresholds.minutes + 1)


def read_history(connection, silver: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Recent readings from kidjamo.measurements that the cross-batch rules need, and only those.

    For each device of the batch, the look-back window before its first batch reading is read
    only when it can matter: its previous reading has the same SpO2 or heart rate as its first
    batch reading (a flatline may have started before the batch), or the batch shows severe pain
    (the consecutive-readings rule). One index probe per device decides; at a 30 s cadence this
    keeps the read small however much history is stored.
    """
    if silver.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    ordered = silver.sort_values("measured_at", kind="stable")
    first = ordered.drop_duplicates("device_id")
    pain_threshold = rules["pain_severe"].thresholds.pain_at_least
    pain = pd.to_numeric(silver["pain_scale"], errors="coerce") if "pain_scale" in silver else pd.Series(np.nan, index=silver.index)
    painful = set(silver.loc[(pain >= pain_threshold).fillna(False), "device_id"])
    since = first["measured_at"] - _history_lookback(rules)

    def floats(column: str) -> pa.Array:
        values = pd.to_numeric(first[column], errors="coerce") if column in first else pd.Series(np.nan, index=first.index)
        return pa.array(values.astype("float64").to_numpy(), pa.float64(), from_pandas=True)

    batch = pa.table({
        "device_id": _arrow_strings(first["device_id"]),
        "since": _arrow_times(since), "until": _arrow_times(first["measured_at"]),
        "spo2": floats("spo2"), "heart_rate": floats("heart_rate"),
        "painful": pa.array(first["device_id"].isin(painful).to_numpy(), pa.bool_()),
    })
    _stage(connection, "history_batch", "device_id text, since timestamptz, until timestamptz, spo2 float8,"
                                         " heart_rate float8, painful boolean", batch)
    history = _copy_out(connection, """
        WITH needed AS (
            SELECT b.device_id, b.since, b.until FROM history_batch AS b
            WHERE b.painful OR EXISTS (
                SELECT 1 FROM (SELECT p.spo2, p.heart_rate FROM kidjamo.measurements AS p
                               WHERE p.device_id = b.device_id AND p.measured_at >= b.since AND p.measured_at < b.until
                               ORDER BY p.measured_at DESC LIMIT 1) AS previous
                WHERE previous.spo2 = b.spo2 OR previous.heart_rate = b.heart_rate)
        )
        SELECT m.device_id, m.patient_id, m.measured_at, m.spo2, m.heart_rate, m.pain_scale, m.age_years
        FROM needed AS n
        JOIN kidjamo.measurements AS m ON m.device_id = n.device_id AND m.measured_at >= n.since AND m.measured_at < n.until
        """, {"device_id": pa.string(), "patient_id": pa.string(), "measured_at": pa.timestamp("us", tz="UTC"),
              "spo2": pa.float64(), "heart_rate": pa.float64(), "pain_scale": pa.float64(), "age_years": pa.float64()})
    connection.execute("DROP TABLE history_batch")
    history["measured_at"] = pd.to_datetime(history["measured_at"], utc=True)
    return history


def _arrow_strings(values) -> pa.Array:
    return pa.array(pd.Series(values).to_numpy(dtype=object), pa.string(), from_pandas=True)


def _arrow_times(values) -> pa.Array:
    return pa.array(pd.to_datetime(pd.Series(values), utc=True).to_numpy(dtype="datetime64[us]"),
                    pa.timestamp("us", tz="UTC"))


def _stage(connection, name: str, columns_sql: str, table: pa.Table) -> None:
    """A temporary table ``name`` (dropped at commit) filled from an Arrow table by COPY."""
    connection.execute(f"CREATE TEMP TABLE {name} ({columns_sql}) ON COMMIT DROP")
    copy_csv(connection, name, table)


def _copy_out(connection, query: str, schema: dict) -> pd.DataFrame:
    """A query's rows as a DataFrame typed by ``schema``, fetched as one NDJSON text read by Arrow.

    One value instead of a row per message (psycopg spends ~12 us per row); timestamps travel as
    epoch microseconds, so no time zone is involved.
    """
    names = list(schema)
    fields = ", ".join(
        f"'{name}', (extract(epoch FROM q.{name}) * 1000000)::bigint" if pa.types.is_timestamp(kind) else f"'{name}', q.{name}"
        for name, kind in schema.items())
    text = connection.execute(
        f"SELECT string_agg(json_build_object({fields})::text, E'\\n') FROM ({query}) AS q").fetchone()[0]
    if not text:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    read_types = pa.schema([(name, pa.int64() if pa.types.is_timestamp(kind) else kind) for name, kind in schema.items()])
    table = pajson.read_json(pa.py_buffer(text.encode()),
                             parse_options=pajson.ParseOptions(explicit_schema=read_types, unexpected_field_behavior="error"))
    for name, kind in schema.items():
        if pa.types.is_timestamp(kind):
            table = table.set_column(names.index(name), name, table[name].cast(pa.timestamp("us")).cast(kind))
    return table.select(names).to_pandas()


def _silver_frame(silver: pa.Table | pd.DataFrame) -> pd.DataFrame:
    frame = silver.to_pandas() if isinstance(silver, pa.Table) else silver.copy()
    if len(frame):
        frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
    return frame


def _update_last_seen(connection, frame: pd.DataFrame) -> int:
    if frame.empty:
        return 0
    latest = frame.groupby("device_id", sort=False).agg(patient_id=("patient_id", "first"), last=("measured_at", "max"))
    _stage(connection, "last_seen_batch", "device_id text, patient_id text, last_measured_at timestamptz", pa.table({
        "device_id": _arrow_strings(latest.index), "patient_id": _arrow_strings(latest["patient_id"]),
        "last_measured_at": _arrow_times(latest["last"])}))
    connection.execute(
        """
        INSERT INTO kidjamo.device_last_seen AS s (device_id, patient_id, last_measured_at)
        SELECT device_id, patient_id, last_measured_at FROM last_seen_batch
        ON CONFLICT (device_id) DO UPDATE SET
            last_measured_at = GREATEST(s.last_measured_at, excluded.last_measured_at),
            patient_id = CASE WHEN excluded.last_measured_at >= s.last_measured_at THEN excluded.patient_id ELSE s.patient_id END,
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
                       AND a.severity = 'critical' AND a.rule_id <> 'sensor_silent') AS has_open_critical
        FROM kidjamo.devices AS d JOIN kidjamo.device_last_seen AS s USING (device_id)
        WHERE d.active AND s.last_measured_at < %(silent_since)s AND s.last_measured_at >= %(lookback)s
        """,
        {"silent_since": as_of - timedelta(minutes=t.silent_minutes), "lookback": as_of - timedelta(hours=t.lookback_hours)},
    ).fetchall()
    if not rows:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS), pd.DataFrame(columns=["patient_id", "rule_id", "device_id", "measured_at"])
    rule = rules["sensor_silent"]
    records, matches = [], []
    for device_id, patient_id, last_seen, has_critical in rows:
        silent_minutes = (as_of - last_seen).total_seconds() / 60
        severity = t.with_open_critical_severity if has_critical else rule.severity
        evidence = {
            "rule": {"id": rule.id, "version": rule.version, "title": rule.title, "condition": rule.condition,
                     "source": rule.source, "ruleset_version": rules.ruleset_version},
            "values": {"last_reading_at": last_seen.isoformat(), "silent_minutes": round(silent_minutes, 1),
                       "patient_has_open_critical_alert": has_critical},
            "thresholds": t.model_dump(), "baseline": {}, "device_id": device_id,
            "measured_at": last_seen.isoformat(), "is_late": False, "delay_seconds": 0.0,
        }
        records.append({"patient_id": patient_id, "rule_id": rule.id, "rule_version": str(rule.version),
                        "severity": severity, "superseded": False, "first_reading_at": last_seen,
                        "last_reading_at": last_seen, "reading_count": 1, "device_id": device_id, "is_late": False,
                        "delay_seconds": 0.0, "evidence": evidence,
                        "lineage": [{"device_id": device_id, "measured_at": last_seen.isoformat()}]})
        matches.append({"patient_id": patient_id, "rule_id": rule.id, "device_id": device_id, "measured_at": last_seen})
    return pd.DataFrame(records, columns=CANDIDATE_COLUMNS), pd.DataFrame(matches)


_UPSERT = """
INSERT INTO kidjamo.alerts AS a (
    patient_id, rule_id, rule_version, severity, status, first_reading_at, last_reading_at, reading_count,
    evidence, lineage, is_late, delay_seconds, source, opened_at, updated_at, severity_since)
SELECT c.patient_id, c.rule_id, c.rule_version, c.severity, 'open', c.first_reading_at, c.last_reading_at,
       c.fresh + 1, c.evidence::jsonb, c.lineage::jsonb, c.is_late, c.delay_seconds, %(source)s,
       %(at)s, %(at)s, %(at)s
FROM unnest(%(patient_id)b::text[], %(rule_id)b::text[], %(rule_version)b::text[], %(severity)b::text[],
            %(first_reading_at)b::timestamptz[], %(last_reading_at)b::timestamptz[], %(fresh)b::integer[],
            %(evidence)b::text[], %(lineage)b::text[], %(is_late)b::boolean[], %(delay_seconds)b::float8[])
     AS c(patient_id, rule_id, rule_version, severity, first_reading_at, last_reading_at, fresh, evidence, lineage,
          is_late, delay_seconds)
ON CONFLICT (patient_id, rule_id) WHERE status <> 'resolved' DO UPDATE SET
    rule_version = excluded.rule_version,
    severity = CASE WHEN kidjamo.severity_rank(excluded.severity) > kidjamo.severity_rank(a.severity)
                    THEN excluded.severity ELSE a.severity END,
    severity_since = CASE WHEN kidjamo.severity_rank(excluded.severity) > kidjamo.severity_rank(a.severity)
                          THEN excluded.severity_since ELSE a.severity_since END,
    -- a higher severity needs a new acknowledgement
    status = CASE WHEN kidjamo.severity_rank(excluded.severity) > kidjamo.severity_rank(a.severity)
                  THEN 'open' ELSE a.status END,
    evidence = CASE WHEN kidjamo.severity_rank(excluded.severity) >= kidjamo.severity_rank(a.severity)
                    THEN excluded.evidence ELSE a.evidence END,
    first_reading_at = LEAST(a.first_reading_at, excluded.first_reading_at),
    last_reading_at = GREATEST(a.last_reading_at, excluded.last_reading_at),
    -- the proposed row carries fresh + 1 (the CHECK wants > 0); inserted rows are corrected afterwards
    reading_count = a.reading_count + excluded.reading_count - 1,
    lineage = (SELECT coalesce(jsonb_agg(entry ORDER BY n), '[]'::jsonb) FROM (
                   SELECT entry, n FROM jsonb_array_elements(excluded.lineage || a.lineage) WITH ORDINALITY AS e(entry, n)
                   ORDER BY n LIMIT %(lineage_limit)s) AS kept),
    is_late = CASE WHEN excluded.last_reading_at >= a.last_reading_at THEN excluded.is_late ELSE a.is_late END,
    delay_seconds = CASE WHEN excluded.last_reading_at >= a.last_reading_at THEN excluded.delay_seconds ELSE a.delay_seconds END,
    updated_at = excluded.updated_at
RETURNING a.alert_id, a.patient_id, a.rule_id, a.severity, (a.xmax = 0) AS inserted
"""


def _upsert_candidates(connection, candidates: pd.DataFrame, matches: pd.DataFrame, *, at: datetime, run_id: str,
                       source: str, settings: Settings) -> dict:
    """Apply candidates to kidjamo.alerts; attach their new readings; record events; queue notifications."""
    counts = {"opened": 0, "updated": 0, "escalated": 0, "unchanged": 0, "unknown_patient": 0}
    if candidates.empty:
        return counts
    keys = ["patient_id", "rule_id"]
    known = {row[0] for row in connection.execute(
        "SELECT patient_id FROM kidjamo.patients WHERE patient_id = ANY(%s)", (list(candidates["patient_id"].unique()),))}
    unknown = ~candidates["patient_id"].isin(known)
    counts["unknown_patient"] = int(unknown.sum())
    candidates = candidates.loc[~unknown]
    matches = matches.merge(candidates[keys], on=keys)
    if candidates.empty:
        return counts
    fresh = _fresh_matches(connection, matches)
    fresh_count = fresh.groupby(keys).size().to_dict() if len(fresh) else {}
    prior = {(p, r): (alert_id, severity) for alert_id, p, r, severity in connection.execute(
        """
        SELECT a.alert_id, a.patient_id, a.rule_id, a.severity FROM kidjamo.alerts AS a
        JOIN unnest(%b::text[], %b::text[]) AS c(patient_id, rule_id) USING (patient_id, rule_id)
        WHERE a.status <> 'resolved' ORDER BY a.alert_id FOR UPDATE OF a
        """,
        (_values(candidates["patient_id"]), _values(candidates["rule_id"])),
    )}
    applied = []
    for row in candidates.itertuples(index=False):
        key = (row.patient_id, row.rule_id)
        new_readings = fresh_count.get(key, 0)
        higher = key in prior and SEVERITY_RANK[row.severity] > SEVERITY_RANK[prior[key][1]]
        if (new_readings == 0 and not higher) or (row.superseded and key not in prior):
            counts["unchanged"] += 1
            continue
        applied.append((row, new_readings))
    events = []
    if applied:
        rows = connection.execute(_UPSERT, {
            "patient_id": [row.patient_id for row, _ in applied], "rule_id": [row.rule_id for row, _ in applied],
            "rule_version": [row.rule_version for row, _ in applied], "severity": [row.severity for row, _ in applied],
            "first_reading_at": [_py_time(row.first_reading_at) for row, _ in applied],
            "last_reading_at": [_py_time(row.last_reading_at) for row, _ in applied],
            "fresh": [fresh for _, fresh in applied],
            "evidence": [json.dumps(row.evidence, default=str) for row, _ in applied],
            "lineage": [json.dumps(row.lineage, default=str) for row, _ in applied],
            "is_late": [bool(row.is_late) for row, _ in applied],
            "delay_seconds": [float(row.delay_seconds) for row, _ in applied],
            "source": source, "at": at, "lineage_limit": LINEAGE_IN_ALERT,
        }).fetchall()
        inserted_ids = [alert_id for alert_id, _, _, _, inserted in rows if inserted]
        if inserted_ids:
            connection.execute("UPDATE kidjamo.alerts SET reading_count = reading_count - 1 WHERE alert_id = ANY(%s)",
                               (inserted_ids,))
        for alert_id, patient_id, rule_id, severity, inserted in rows:
            key = (patient_id, rule_id)
            if inserted:
                counts["opened"] += 1
                events.append((alert_id, f"{alert_id}:opened", "opened", severity, {"run_id": run_id}))
            elif key in prior and SEVERITY_RANK[severity] > SEVERITY_RANK[prior[key][1]]:
                counts["escalated"] += 1
                events.append((alert_id, f"{alert_id}:severity:{severity}", "escalated", severity,
                               {"from": prior[key][1], "to": severity, "run_id": run_id}))
            else:  # also an alert another writer (the fast path) opened since our read: its event is theirs
                counts["updated"] += 1
    _attach_readings(connection, fresh)
    counts["events"] = len(events)
    counts["notifications_queued"] = record_events(connection, events, at=at, run_id=run_id, settings=settings)
    return counts


def _values(values) -> list:
    """A column as a Python list for an array parameter (fast for Arrow-backed strings too)."""
    return pd.Series(values).to_numpy(dtype=object).tolist()


def _py_time(value) -> datetime:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _fresh_matches(connection, matches: pd.DataFrame) -> pd.DataFrame:
    """The matches not yet attached to any alert of the same patient and rule."""
    if matches.empty:
        return matches
    columns = ["patient_id", "rule_id", "device_id", "measured_at"]
    frame = matches.copy()
    for column in ("raw_file", "record_index"):
        if column not in frame:
            frame[column] = None
    times = [_py_time(t) for t in pd.to_datetime(frame["measured_at"], utc=True)]
    raw_file = [None if pd.isna(f) else str(f) for f in frame["raw_file"]]
    record_index = [None if pd.isna(i) else int(i) for i in frame["record_index"]]
    if any(raw_file):
        # Readings first attached by the fast path get their lake lineage when the batch sees them.
        connection.execute(
            """
            UPDATE kidjamo.alert_readings AS r SET raw_file = m.raw_file, record_index = m.record_index
            FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::integer[])
                 AS m(patient_id, rule_id, device_id, measured_at, raw_file, record_index)
            WHERE r.raw_file IS NULL AND m.raw_file IS NOT NULL AND r.patient_id = m.patient_id
              AND r.rule_id = m.rule_id AND r.device_id = m.device_id AND r.measured_at = m.measured_at
            """,
            (_values(frame["patient_id"]), _values(frame["rule_id"]), _values(frame["device_id"]), times, raw_file, record_index),
        )
    attached = connection.execute(
        """
        SELECT m.n FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[]) WITH ORDINALITY
             AS m(patient_id, rule_id, device_id, measured_at, n)
        JOIN kidjamo.alert_readings AS r USING (patient_id, rule_id, device_id, measured_at)
        """,
        (_values(frame["patient_id"]), _values(frame["rule_id"]), _values(frame["device_id"]), times),
    ).fetchall()
    seen = np.zeros(len(frame), dtype=bool)
    if attached:
        seen[[n - 1 for (n,) in attached]] = True
    return frame.loc[~seen, [*columns, "raw_file", "record_index"]]


def _attach_readings(connection, fresh: pd.DataFrame) -> None:
    if fresh.empty:
        return
    record_index = [None if pd.isna(i) else int(i) for i in fresh["record_index"]]
    raw_file = [None if pd.isna(f) else str(f) for f in fresh["raw_file"]]
    connection.execute(
        """
        INSERT INTO kidjamo.alert_readings (patient_id, rule_id, device_id, measured_at, alert_id, raw_file, record_index)
        SELECT m.patient_id, m.rule_id, m.device_id, m.measured_at, a.alert_id, m.raw_file, m.record_index
        FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::integer[])
             AS m(patient_id, rule_id, device_id, measured_at, raw_file, record_index)
        JOIN kidjamo.alerts AS a ON a.patient_id = m.patient_id AND a.rule_id = m.rule_id AND a.status <> 'resolved'
        ON CONFLICT (patient_id, rule_id, device_id, measured_at) DO UPDATE
            SET raw_file = coalesce(kidjamo.alert_readings.raw_file, excluded.raw_file),
                record_index = coalesce(kidjamo.alert_readings.record_index, excluded.record_index)
        """,
        (_values(fresh["patient_id"]), _values(fresh["rule_id"]), _values(fresh["device_id"]),
         [_py_time(t) for t in pd.to_datetime(fresh["measured_at"], utc=True)], raw_file, record_index),
    )


def record_events(connection, events: list[tuple], *, at: datetime, run_id: str | None, settings: Settings,
                  audience: str = "care_team", actor: str = "pipeline") -> int:
    """Insert alert events (once per event key) and queue their notifications; return how many were queued.

    ``events`` holds (alert_id, event_key, event_type, severity, details) tuples.
    """
    if not events:
        return 0
    inserted = connection.execute(
        """
        INSERT INTO kidjamo.alert_events (alert_id, event_key, event_type, severity, audience, actor, details, run_id, event_at)
        SELECT e.alert_id, e.event_key, e.event_type, e.severity, %s, %s, e.details::jsonb, %s, %s
        FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[])
             AS e(alert_id, event_key, event_type, severity, details)
        ON CONFLICT (event_key) DO NOTHING
        RETURNING event_id, event_type, severity
        """,
        (audience, actor, run_id, at, [e[0] for e in events], [e[1] for e in events], [e[2] for e in events],
         [e[3] for e in events], [json.dumps(e[4], default=str) for e in events]),
    ).fetchall()
    queue = [(event_id, channel) for event_id, event_type, severity in inserted
             if event_type in ("opened", "escalated", "escalation_notice")
             for channel in _channels_for(severity, settings)]
    if not queue:
        return 0
    return connection.execute(
        """
        INSERT INTO kidjamo.notifications (event_id, channel, next_attempt_at)
        SELECT n.event_id, n.channel, %s FROM unnest(%b::bigint[], %b::text[]) AS n(event_id, channel)
        ON CONFLICT (event_id, channel) DO NOTHING
        """,
        (at, [q[0] for q in queue], [q[1] for q in queue]),
    ).rowcount


def _channels_for(severity: str, settings: Settings) -> list[str]:
    """Webhook and SNS page from ``notify_min_severity``; the log records every event."""
    pages = SEVERITY_RANK[severity] >= SEVERITY_RANK[settings.notify_min_severity]
    return [channel for channel in notify.configured_channels(settings) if channel == "log" or pages]


def _auto_resolve(connection, as_of: datetime, run_id: str, settings: Settings) -> int:
    """Resolve alerts whose rule stopped matching: newer readings exist and the quiet period has passed.

    ``sensor_silent`` resolves as soon as its device reports again.
    """
    quiet = timedelta(minutes=settings.alert_quiet_minutes)
    rows = connection.execute(
        """
        WITH patient_last AS (
            SELECT patient_id, max(last_measured_at) AS last_seen FROM kidjamo.device_last_seen GROUP BY patient_id
        )
        UPDATE kidjamo.alerts AS a
        SET status = 'resolved', resolved_at = %(as_of)s, resolved_by = 'pipeline', updated_at = %(as_of)s,
            resolution = CASE WHEN a.rule_id = 'sensor_silent' THEN 'device reporting again'
                              ELSE 'rule quiet for ' || %(quiet_minutes)s || ' minutes' END
        FROM patient_last AS p
        WHERE a.patient_id = p.patient_id AND a.status <> 'resolved'
          AND CASE WHEN a.rule_id = 'sensor_silent'
                   THEN EXISTS (SELECT 1 FROM kidjamo.device_last_seen AS s
                                WHERE s.device_id = a.evidence ->> 'device_id' AND s.last_measured_at > a.last_reading_at)
                   ELSE a.last_reading_at <= %(as_of)s - %(quiet)s AND p.last_seen >= a.last_reading_at + %(quiet)s END
        RETURNING a.alert_id, a.severity
        """,
        {"as_of": as_of, "quiet": quiet, "quiet_minutes": f"{settings.alert_quiet_minutes:g}"},
    ).fetchall()
    events = [(alert_id, f"{alert_id}:resolved", "resolved", severity, {"reason": "auto", "run_id": run_id})
              for alert_id, severity in rows]
    record_events(connection, events, at=as_of, run_id=run_id, settings=settings)
    return len(rows)


def raise_alerts(database_url: str, silver: pa.Table | pd.DataFrame, *, interval_start: datetime, interval_end: datetime,
                 run_id: str, rules: RuleSet | None = None, settings: Settings | None = None) -> dict:
    """Evaluate the interval's silver readings and bring ``kidjamo.alerts`` up to date (idempotent).

    Returns counts (opened, updated, escalated, unchanged, resolved, silent, notifications_queued…)
    and ``candidates``: the DataFrame of :func:`evaluate_rules` plus silent-device candidates.
    """
    rules = rules or default_rules()
    settings = settings or get_settings()
    frame = _silver_frame(silver)
    with connect(database_url, application_name="kidjamo-alerts") as connection:
        history = read_history(connection, frame, rules)
        matches = match_readings(frame, history, rules=rules) if len(frame) else pd.DataFrame()
        candidates = candidates_from_matches(matches, rules) if len(frame) else pd.DataFrame(columns=CANDIDATE_COLUMNS)
        devices_seen = _update_last_seen(connection, frame)
        silent, silent_matches = silent_device_candidates(connection, interval_end, rules)
        all_candidates = pd.concat([c for c in (candidates, silent) if len(c)], ignore_index=True) \
            if len(candidates) or len(silent) else pd.DataFrame(columns=CANDIDATE_COLUMNS)
        match_keys = matches[["patient_id", "rule_id", "device_id", "measured_at", "raw_file", "record_index"]] \
            if len(matches) else pd.DataFrame(columns=["patient_id", "rule_id", "device_id", "measured_at"])
        all_matches = pd.concat([m for m in (match_keys, silent_matches) if len(m)], ignore_index=True) \
            if len(match_keys) or len(silent_matches) else match_keys
        counts = _upsert_candidates(connection, all_candidates, all_matches, at=interval_end, run_id=run_id,
                                    source="batch", settings=settings)
        counts["resolved"] = _auto_resolve(connection, interval_end, run_id, settings)
    all_candidates["as_of"] = interval_end
    return {"readings": len(frame), "history_readings": len(history), "devices_seen": devices_seen,
            "matches": len(matches), "silent_devices": len(silent), **counts, "candidates": all_candidates}


# --- fast path ---------------------------------------------------------------------------------------
def raise_fast_path_alert(database_url: str, reading: dict, *, received_at: datetime, rules: RuleSet | None = None,
                          settings: Settings | None = None) -> int | None:
    """Open (or update) a critical alert at once for a raw payload crossing a fast-path threshold.

    ``reading`` is a payload of DESIGN.md (device_id, patient_id, timestamp, vitals…). Returns the
    alert id, or None when nothing crosses a threshold or the patient is not registered. The
    reading is attached to the alert, so the minute batch updates this alert instead of counting
    the reading again.
    """
    rules = rules or default_rules()
    settings = settings or get_settings()
    vitals = reading.get("vitals") or {}
    spo2, temperature = vitals.get("spo2"), vitals.get("temperature")
    fired = []
    for rule in rules.rules.values():
        fast = rule.fast_path
        if fast is None:
            continue
        if fast.spo2_below is not None and isinstance(spo2, (int, float)) and spo2 < fast.spo2_below:
            fired.append((rule, {"spo2": spo2}, fast.model_dump(exclude_none=True)))
        elif fast.temperature_at_least is not None and isinstance(temperature, (int, float)) \
                and temperature >= fast.temperature_at_least:
            fired.append((rule, {"temperature": temperature}, fast.model_dump(exclude_none=True)))
    if not fired:
        return None
    measured_at = pd.Timestamp(reading["timestamp"]).tz_convert("UTC") if pd.Timestamp(reading["timestamp"]).tzinfo \
        else pd.Timestamp(reading["timestamp"]).tz_localize("UTC")
    delay = max((received_at - measured_at.to_pydatetime()).total_seconds(), 0.0)
    is_late = delay > settings.late_after.total_seconds()
    records, matches = [], []
    for rule, values, thresholds in fired:
        evidence = {
            "rule": {"id": rule.id, "version": rule.version, "title": rule.title, "condition": rule.condition,
                     "source": rule.source, "ruleset_version": rules.ruleset_version},
            "values": values, "thresholds": {"fast_path": thresholds, **rule.thresholds.model_dump()}, "baseline": {},
            "device_id": reading.get("device_id"), "measured_at": measured_at.isoformat(), "is_late": is_late,
            "delay_seconds": delay, "fast_path": True, "message_id": reading.get("message_id"),
        }
        records.append({"patient_id": reading["patient_id"], "rule_id": rule.id, "rule_version": str(rule.version),
                        "severity": rule.severity, "superseded": False, "first_reading_at": measured_at,
                        "last_reading_at": measured_at, "reading_count": 1, "device_id": reading.get("device_id"),
                        "is_late": is_late, "delay_seconds": delay, "evidence": evidence,
                        "lineage": [{"device_id": reading.get("device_id"), "measured_at": measured_at.isoformat(),
                                     "message_id": reading.get("message_id"), "source": "fast_path"}]})
        matches.append({"patient_id": reading["patient_id"], "rule_id": rule.id, "device_id": reading.get("device_id"),
                        "measured_at": measured_at})
    with connect(database_url, application_name="kidjamo-fast-path") as connection:
        _upsert_candidates(connection, pd.DataFrame(records, columns=CANDIDATE_COLUMNS), pd.DataFrame(matches),
                           at=received_at, run_id=None, source="fast_path", settings=settings)
        row = connection.execute(
            "SELECT alert_id FROM kidjamo.alerts WHERE patient_id = %s AND rule_id = ANY(%s) AND status <> 'resolved'"
            " ORDER BY kidjamo.severity_rank(severity) DESC, alert_id LIMIT 1",
            (reading["patient_id"], [rule.id for rule, _, _ in fired]),
        ).fetchone()
    return row[0] if row else None


# --- 3. escalation -----------------------------------------------------------------------------------
def escalate(database_url: str, *, as_of: datetime, rules: RuleSet | None = None, settings: Settings | None = None) -> dict:
    """Escalation notices for critical alerts still unacknowledged 5 and 15 minutes after becoming critical."""
    rules = rules or default_rules()
    settings = settings or get_settings()
    tiers = [(1, "escalation", rules.escalation.escalation_channel_minutes),
             (2, "second_tier", rules.escalation.second_tier_minutes)]
    counts = {"escalation": 0, "second_tier": 0, "notifications_queued": 0}
    with connect(database_url, application_name="kidjamo-escalation") as connection:
        for tier, audience, minutes in tiers:
            due = connection.execute(
                """
                SELECT alert_id FROM kidjamo.alerts AS a
                WHERE status = 'open' AND severity = 'critical' AND severity_since <= %s
                  AND NOT EXISTS (SELECT 1 FROM kidjamo.alert_events AS e WHERE e.event_key = a.alert_id || ':escalation:' || %s)
                """,
                (as_of - timedelta(minutes=minutes), tier),
            ).fetchall()
            events = [(alert_id, f"{alert_id}:escalation:{tier}", "escalation_notice", "critical",
                       {"tier": tier, "unacknowledged_minutes": minutes}) for (alert_id,) in due]
            counts[audience] = len(events)
            counts["notifications_queued"] += record_events(connection, events, at=as_of, run_id=None,
                                                            settings=settings, audience=audience)
    return counts


# --- 4. delivery -------------------------------------------------------------------------------------
_CLAIM = """
WITH due AS (
    SELECT n.notification_id FROM kidjamo.notifications AS n
    WHERE (n.status = 'pending' AND n.next_attempt_at <= %(now)s)
       OR (n.status = 'sending' AND n.claimed_at < %(stale)s)
    ORDER BY n.next_attempt_at, n.notification_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE kidjamo.notifications AS n SET status = 'sending', claimed_at = %(now)s
FROM due WHERE n.notification_id = due.notification_id
RETURNING n.notification_id
"""

_DOCUMENT = """
SELECT n.notification_id, n.channel, n.attempts, e.event_id, e.event_key, e.event_type, e.audience, e.severity,
       e.event_at, e.details, a.alert_id, a.patient_id, a.rule_id, a.rule_version, a.status, a.first_reading_at,
       a.last_reading_at, a.reading_count, a.is_late, a.delay_seconds, a.evidence, p.care_team
FROM kidjamo.notifications AS n
JOIN kidjamo.alert_events AS e USING (event_id)
JOIN kidjamo.alerts AS a USING (alert_id)
LEFT JOIN kidjamo.patients AS p USING (patient_id)
WHERE n.notification_id = ANY(%s)
ORDER BY kidjamo.severity_rank(e.severity) DESC, n.notification_id
"""


def notification_document(row: dict) -> dict:
    """The JSON document sent for an alert event (the same on every channel)."""
    evidence = row["evidence"] or {}
    return {
        "kind": "kidjamo.alert", "event_id": row["event_id"], "event_key": row["event_key"],
        "event_type": row["event_type"], "audience": row["audience"], "event_at": row["event_at"],
        "alert_id": row["alert_id"], "patient_id": row["patient_id"], "care_team": row["care_team"],
        "rule_id": row["rule_id"], "rule_version": row["rule_version"], "severity": row["severity"],
        "status": row["status"], "title": (evidence.get("rule") or {}).get("title"),
        "first_reading_at": row["first_reading_at"], "last_reading_at": row["last_reading_at"],
        "reading_count": row["reading_count"], "is_late": row["is_late"], "delay_seconds": row["delay_seconds"],
        "evidence": evidence, "details": row["details"],
    }


def deliver_notifications(database_url: str, *, now: datetime | None = None, limit: int = 500,
                          settings: Settings | None = None) -> dict:
    """Send every due notification once; record each attempt; reschedule failures with backoff.

    Rows are claimed (status ``sending``) in a committed transaction with ``FOR UPDATE SKIP LOCKED``
    before anything is sent, so concurrent or retried tasks never send the same notification; a
    claim left by a crashed sender is retried after ``notify_claim_timeout_s`` with the same
    delivery id (``X-Kidjamo-Delivery`` header, SNS deduplication id) for receivers to deduplicate.
    """
    settings = settings or get_settings()
    now = now or datetime.now(timezone.utc)
    stale = now - timedelta(seconds=settings.notify_claim_timeout_s)
    with connect(database_url, application_name="kidjamo-notify") as connection:
        claimed = [row[0] for row in connection.execute(_CLAIM, {"now": now, "stale": stale, "limit": limit})]
    counts = {"claimed": len(claimed), "sent": 0, "retry_later": 0, "failed": 0}
    if not claimed:
        return counts
    # One connection reads the documents and records every outcome, each committed as soon as its
    # notification is handled.
    with connect(database_url, application_name="kidjamo-notify") as connection:
        cursor = connection.execute(_DOCUMENT, (claimed,))
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
        connection.commit()
        for row in rows:
            outcome = _deliver_one(connection, row, now=now, settings=settings)
            counts[outcome] += 1
    return counts


def _deliver_one(connection, row: dict, *, now: datetime, settings: Settings) -> str:
    document = notification_document(row)
    target = notify.target(row["channel"], row["audience"], settings)
    delivery_id = f"{row['event_key']}:{row['channel']}"
    subject = f"[{row['severity'].upper()}] {document['title'] or row['rule_id']} — patient {row['patient_id']}"
    attempts: list[tuple[int, str, str]] = []
    attempt_number = row["attempts"]

    def send() -> str:
        nonlocal attempt_number
        attempt_number += 1
        try:
            detail = notify.deliver(target, document, subject=subject, delivery_id=delivery_id,
                                    group_id=row["patient_id"], settings=settings)
        except notify.DeliveryError as error:
            attempts.append((attempt_number, "failed", str(error)[:1000]))
            raise
        attempts.append((attempt_number, "sent", detail))
        return detail

    per_run = max(1, min(settings.notify_attempts_per_run, settings.notify_max_attempts - row["attempts"]))
    retrying = Retrying(stop=stop_after_attempt(per_run), wait=wait_exponential(multiplier=0.2, max=2),
                        retry=retry_if_exception_type(notify.DeliveryError), reraise=False)
    try:
        retrying(send)
        sent = True
    except RetryError:
        sent = False
    if sent:
        status, next_attempt, outcome = "sent", None, "sent"
    elif attempt_number >= settings.notify_max_attempts:
        status, next_attempt, outcome = "failed", None, "failed"
    else:
        backoff = min(settings.notify_retry_base_s * 2 ** (attempt_number - 1), 3600)
        status, next_attempt, outcome = "pending", now + timedelta(seconds=backoff), "retry_later"
    try:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO kidjamo.notification_attempts (notification_id, attempt, outcome, target, detail)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(row["notification_id"], number, result, target.address or target.channel, detail)
                 for number, result, detail in attempts],
            )
        connection.execute(
            """
            UPDATE kidjamo.notifications SET status = %s, attempts = %s, claimed_at = NULL,
                   sent_at = CASE WHEN %s = 'sent' THEN now() END,
                   next_attempt_at = coalesce(%s, next_attempt_at), last_error = %s
            WHERE notification_id = %s
            """,
            (status, attempt_number, status, next_attempt, None if sent else attempts[-1][2], row["notification_id"]),
        )
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    if not sent:
        log.warning("notification %s (%s) not delivered: %s", row["notification_id"], delivery_id, attempts[-1][2])
    return outcome


# --- 5. clinicians' actions (kidjamo alerts …) ---------------------------------------------------------
class AlertActionError(ValueError):
    """An acknowledgement or resolution that cannot apply (unknown alert, already resolved…)."""


def list_alerts(database_url: str, *, status: str | None = "active", min_severity: str = "info",
                patient_id: str | None = None, limit: int = 100) -> list[dict]:
    """Alerts, most severe and most recent first. ``status``: active (open + acknowledged), a status, or None (all)."""
    statuses = {"active": ["open", "acknowledged"], None: ["open", "acknowledged", "resolved"]}.get(status, [status])
    with connect(database_url, application_name="kidjamo-cli") as connection:
        cursor = connection.execute(
            """
            SELECT alert_id, patient_id, rule_id, rule_version, severity, status, first_reading_at, last_reading_at,
                   reading_count, is_late, delay_seconds, source, opened_at, acknowledged_by, acknowledged_at,
                   resolved_by, resolved_at, evidence -> 'rule' ->> 'title' AS title
            FROM kidjamo.alerts
            WHERE status = ANY(%s) AND kidjamo.severity_rank(severity) >= kidjamo.severity_rank(%s)
              AND (%s::text IS NULL OR patient_id = %s)
            ORDER BY kidjamo.severity_rank(severity) DESC, last_reading_at DESC LIMIT %s
            """,
            (statuses, min_severity, patient_id, patient_id, limit),
        )
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def alert_details(database_url: str, alert_id: int) -> dict:
    """One alert with its events, the readings behind it and its notifications."""
    with connect(database_url, application_name="kidjamo-cli") as connection:
        def rows(sql: str) -> list[dict]:
            cursor = connection.execute(sql, (alert_id,))
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        alert = rows("SELECT * FROM kidjamo.alerts WHERE alert_id = %s")
        if not alert:
            raise AlertActionError(f"no alert {alert_id}")
        details = alert[0]
        details["events"] = rows("SELECT event_id, event_type, severity, audience, actor, event_at, details"
                                 " FROM kidjamo.alert_events WHERE alert_id = %s ORDER BY event_id")
        details["readings"] = rows("SELECT device_id, measured_at, raw_file, record_index FROM kidjamo.alert_readings"
                                   " WHERE alert_id = %s ORDER BY measured_at")
        details["notifications"] = rows(
            "SELECT n.notification_id, e.event_type, n.channel, n.status, n.attempts, n.sent_at, n.last_error"
            " FROM kidjamo.notifications AS n JOIN kidjamo.alert_events AS e USING (event_id)"
            " WHERE e.alert_id = %s ORDER BY n.notification_id")
    return details


@contextmanager
def _action_connection(database, application_name: str):
    """A transaction for a clinician's action: on a new connection to a URL, or on the caller's connection.

    The care-team app passes its connection, already switched to the clinician's role (SET ROLE):
    row-level security then limits the action to the alerts that clinician may see.
    """
    if isinstance(database, str):
        with connect(database, application_name=application_name) as connection:
            yield connection
    else:
        with database.transaction():
            yield database


def _act(database, alert_id: int, *, action: str, by: str, note: str | None, at: datetime | None,
         settings: Settings | None = None) -> dict:
    at = at or datetime.now(timezone.utc)
    with _action_connection(database, "kidjamo-cli") as connection:
        row = connection.execute("SELECT status, severity FROM kidjamo.alerts WHERE alert_id = %s FOR UPDATE",
                                 (alert_id,)).fetchone()
        if row is None:
            raise AlertActionError(f"no alert {alert_id}")
        status, severity = row
        if status == "resolved":
            raise AlertActionError(f"alert {alert_id} is already resolved")
        if action == "escalation_notice":
            return _escalate_by_hand(connection, alert_id, severity, by=by, note=note, at=at,
                                     settings=settings or get_settings())
        if action == "acknowledged":
            if status == "acknowledged":
                raise AlertActionError(f"alert {alert_id} is already acknowledged")
            connection.execute(
                "UPDATE kidjamo.alerts SET status = 'acknowledged', acknowledged_at = %s, acknowledged_by = %s,"
                " updated_at = %s WHERE alert_id = %s", (at, by, at, alert_id))
            event_key = f"{alert_id}:acknowledged:{severity}"
        else:
            connection.execute(
                "UPDATE kidjamo.alerts SET status = 'resolved', resolved_at = %s, resolved_by = %s, resolution = %s,"
                " updated_at = %s WHERE alert_id = %s", (at, by, note or "resolved by hand", at, alert_id))
            event_key = f"{alert_id}:resolved"
        connection.execute(
            "INSERT INTO kidjamo.alert_events (alert_id, event_key, event_type, severity, actor, details, event_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING",
            (alert_id, event_key, action, severity, by, json.dumps({"note": note}), at))
    return {"alert_id": alert_id, "status": action, "by": by, "at": at.isoformat()}


def _escalate_by_hand(connection, alert_id: int, severity: str, *, by: str, note: str | None, at: datetime,
                      settings: Settings) -> dict:
    """Send the next escalation tier not yet sent (the same events the 5/15-minute clock sends)."""
    sent = {key for (key,) in connection.execute(
        "SELECT event_key FROM kidjamo.alert_events WHERE alert_id = %s AND event_type = 'escalation_notice'",
        (alert_id,))}
    tier = next((tier for tier in (1, 2) if f"{alert_id}:escalation:{tier}" not in sent), None)
    if tier is None:
        raise AlertActionError(f"alert {alert_id} is already escalated to the second tier")
    audience = "escalation" if tier == 1 else "second_tier"
    record_events(connection, [(alert_id, f"{alert_id}:escalation:{tier}", "escalation_notice", severity,
                                {"tier": tier, "by_hand": True, "note": note})],
                  at=at, run_id=None, settings=settings, audience=audience, actor=by)
    return {"alert_id": alert_id, "status": f"escalated to {audience.replace('_', ' ')}", "tier": tier, "by": by,
            "at": at.isoformat()}


def acknowledge_alert(database, alert_id: int, *, by: str, note: str | None = None,
                      at: datetime | None = None) -> dict:
    """Record who acknowledged the alert and when (stops its escalation).

    ``database`` is a URL, or an open connection (the care-team app's, as the clinician).
    """
    return _act(database, alert_id, action="acknowledged", by=by, note=note, at=at)


def resolve_alert(database, alert_id: int, *, by: str, note: str | None = None,
                  at: datetime | None = None) -> dict:
    """Close the alert by hand, recording who, when and why (``database``: URL or open connection)."""
    return _act(database, alert_id, action="resolved", by=by, note=note, at=at)


def escalate_alert(database, alert_id: int, *, by: str, note: str | None = None, at: datetime | None = None,
                   settings: Settings | None = None) -> dict:
    """Escalate the alert by hand now: the next tier (escalation, then second tier) is notified.

    The same event as the automatic escalation of :func:`escalate`, so each tier is sent once.
    ``database``: URL or open connection.
    """
    return _act(database, alert_id, action="escalation_notice", by=by, note=note, at=at, settings=settings)
