"""Alerts in the database: candidates upserted into ``kidjamo.alerts``, events, notifications queued.

:func:`raise_alerts` brings ``kidjamo.alerts`` up to date for an interval: one open alert per
patient and rule, updated by new readings; a higher severity escalates it (an event row); a rule
quiet for ``alert_quiet_minutes`` resolves it; silent devices raise ``sensor_silent``. Each
matching reading is attached once (``kidjamo.alert_readings``), so re-running or backfilling an
interval changes nothing and queues nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from kidjamo import notify
from kidjamo.settings import Settings
from kidjamo.warehouse.bulk import copy_out
from kidjamo.warehouse.database import connect
from transforms.alerts.evaluate import (CANDIDATE_COLUMNS, LINEAGE_IN_ALERT, NORMAL_COLUMNS, candidates_from_matches,
                                       match_and_clear)
from transforms.alerts.history import read_history, silent_device_candidates, silver_frame, update_last_seen
from transforms.alerts.implausible import implausible_candidates
from transforms.clinical.rules import SEVERITY_RANK, RuleSet

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


def upsert_candidates(connection, candidates: pd.DataFrame, matches: pd.DataFrame, *, at: datetime, run_id: str,
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


#: Alert events the people concerned are told about (an acknowledgement is their own action).
NOTIFIED_EVENTS = ("opened", "escalated", "escalation_notice", "renotified", "resolved")


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
             if event_type in NOTIFIED_EVENTS
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


def _record_normal_readings(connection, normals: pd.DataFrame) -> int:
    """Remember, on each unresolved alert, the latest normal reading after its last matching one.

    ``normals`` has a row per (patient, resolvable rule) of the batch for the patients with an
    unresolved alert or a match in the batch — still mostly rules with no unresolved alert. The
    unresolved alerts are read first (through the partial unique index), and only the normal
    readings that move one of them are sent back.
    """
    if normals.empty:
        return 0
    unresolved = copy_out(
        connection, "SELECT patient_id, rule_id, last_reading_at FROM kidjamo.alerts WHERE status <> 'resolved'",
        {"patient_id": pa.string(), "rule_id": pa.string(), "last_reading_at": pa.timestamp("us", tz="UTC")})
    if unresolved.empty:
        return 0
    normal_at = pd.to_datetime(normals["normal_at"], utc=True)
    moved = unresolved.merge(normals[["patient_id", "rule_id"]].assign(normal_at=normal_at),
                             on=["patient_id", "rule_id"])
    moved = moved.loc[moved["normal_at"] > moved["last_reading_at"]]
    if moved.empty:
        return 0
    return connection.execute(
        """
        UPDATE kidjamo.alerts AS a SET normal_reading_at = GREATEST(a.normal_reading_at, n.normal_at)
        FROM unnest(%b::text[], %b::text[], %b::timestamptz[]) AS n(patient_id, rule_id, normal_at)
        WHERE a.patient_id = n.patient_id AND a.rule_id = n.rule_id AND a.status <> 'resolved'
          AND n.normal_at > a.last_reading_at
        """,
        (_values(moved["patient_id"]), _values(moved["rule_id"]), list(moved["normal_at"].dt.to_pydatetime())),
    ).rowcount


def _auto_resolve(connection, as_of: datetime, run_id: str, rules: RuleSet, settings: Settings) -> int:
    """Resolve the alerts whose patient is well again, and notify each resolution.

    An alert resolves itself only when all of these hold: its rule may resolve itself (fever in
    sickle-cell disease may not); it is not critical and unacknowledged; a *normal* reading of the
    rule's parameters came after its last matching reading (no reading is not a normal reading);
    the quiet period has passed since that last matching reading; and it has been open for the
    quiet period, so a late episode is never opened and resolved in one run. ``sensor_silent``
    resolves as soon as its device reports again (not in the run that opened it).
    """
    quiet = timedelta(minutes=settings.alert_quiet_minutes)
    resolvable = [rule.id for rule in rules.rules.values() if rule.auto_resolve and rule.resolve_on]
    rows = connection.execute(
        """
        UPDATE kidjamo.alerts AS a
        SET status = 'resolved', resolved_at = %(as_of)s, resolved_by = 'pipeline', updated_at = %(as_of)s,
            resolution = CASE WHEN a.rule_id = 'sensor_silent' THEN 'device reporting again'
                              ELSE 'normal reading at ' || to_char(a.normal_reading_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ', rule quiet for ' || %(quiet_minutes)s
                                   || ' minutes' END
        WHERE a.status <> 'resolved' AND a.opened_at < %(as_of)s
          AND CASE WHEN a.rule_id = 'sensor_silent'
                   THEN EXISTS (SELECT 1 FROM kidjamo.device_last_seen AS s
                                WHERE s.device_id = a.evidence ->> 'device_id' AND s.last_measured_at > a.last_reading_at)
                   ELSE a.rule_id = ANY(%(resolvable)s)
                        AND NOT (a.severity = 'critical' AND a.status = 'open')
                        AND a.normal_reading_at > a.last_reading_at
                        AND a.last_reading_at <= %(as_of)s - %(quiet)s
                        AND a.opened_at <= %(as_of)s - %(quiet)s END
        RETURNING a.alert_id, a.severity, a.resolution
        """,
        {"as_of": as_of, "quiet": quiet, "quiet_minutes": f"{settings.alert_quiet_minutes:g}", "resolvable": resolvable},
    ).fetchall()
    events = [(alert_id, f"{alert_id}:resolved", "resolved", severity,
               {"reason": "auto", "resolution": resolution, "run_id": run_id})
              for alert_id, severity, resolution in rows]
    record_events(connection, events, at=as_of, run_id=run_id, settings=settings)
    return len(rows)


def raise_alerts(database_url: str, silver: pa.Table | pd.DataFrame, *, interval_start: datetime, interval_end: datetime,
                 run_id: str, rules: RuleSet, settings: Settings, quarantine: pa.Table | None = None,
                 sweep: bool = True) -> dict:
    """Evaluate the interval's silver readings and bring ``kidjamo.alerts`` up to date (idempotent).

    ``quarantine`` (the interval's bronze quarantine) raises ``implausible_vital`` for vitals out of
    their plausibility range: quarantined, but never silently. ``sweep=False`` leaves out what looks
    at every device and alert (silent devices, auto-resolution): a shard of a minute evaluates its
    own patients, and :func:`sweep_alerts` runs once after every shard.

    Returns counts (opened, updated, escalated, unchanged, resolved, silent, notifications_queued…)
    and ``candidates``: the DataFrame of :func:`evaluate_rules` plus silent-device candidates.
    """
    frame = silver_frame(silver)
    with connect(database_url, application_name="kidjamo-alerts") as connection:
        history = read_history(connection, frame, rules)
        # Normal readings matter only to patients with an unresolved alert (or one this batch opens).
        unresolved = [row[0] for row in connection.execute(
            "SELECT DISTINCT patient_id FROM kidjamo.alerts WHERE status <> 'resolved'")]
        matches, normals = match_and_clear(frame, history, rules=rules, normals_for=unresolved) if len(frame) \
            else (pd.DataFrame(), pd.DataFrame(columns=NORMAL_COLUMNS))
        candidates = candidates_from_matches(matches, rules) if len(frame) else pd.DataFrame(columns=CANDIDATE_COLUMNS)
        devices_seen = update_last_seen(connection, frame)
        silent, silent_matches = silent_device_candidates(connection, interval_end, rules) if sweep \
            else (pd.DataFrame(), pd.DataFrame())
        implausible, implausible_matches = implausible_candidates(connection, quarantine, rules)
        all_candidates = pd.concat([c for c in (candidates, silent, implausible) if len(c)], ignore_index=True) \
            if len(candidates) or len(silent) or len(implausible) else pd.DataFrame(columns=CANDIDATE_COLUMNS)
        match_keys = matches[["patient_id", "rule_id", "device_id", "measured_at", "raw_file", "record_index"]] \
            if len(matches) else pd.DataFrame(columns=["patient_id", "rule_id", "device_id", "measured_at"])
        all_matches = pd.concat([m for m in (match_keys, silent_matches, implausible_matches) if len(m)],
                                ignore_index=True) if len(match_keys) or len(silent_matches) or len(implausible_matches) \
            else match_keys
        counts = upsert_candidates(connection, all_candidates, all_matches, at=interval_end, run_id=run_id,
                                    source="batch", settings=settings)
        counts["normal_readings"] = _record_normal_readings(connection, normals)
        counts["resolved"] = _auto_resolve(connection, interval_end, run_id, rules, settings) if sweep else 0
    all_candidates["as_of"] = interval_end
    return {"readings": len(frame), "history_readings": len(history), "devices_seen": devices_seen,
            "matches": len(matches), "silent_devices": len(silent), **counts, "candidates": all_candidates}


def sweep_alerts(database_url: str, *, interval_end: datetime, run_id: str, rules: RuleSet, settings: Settings) -> dict:
    """What :func:`raise_alerts` leaves out with ``sweep=False``, once every shard's readings are in:
    silent devices (from every shard's last-seen times) and auto-resolution over all alerts."""
    with connect(database_url, application_name="kidjamo-alerts") as connection:
        silent, silent_matches = silent_device_candidates(connection, interval_end, rules)
        counts = upsert_candidates(connection, silent if len(silent) else pd.DataFrame(columns=CANDIDATE_COLUMNS),
                                   silent_matches if len(silent_matches) else
                                   pd.DataFrame(columns=["patient_id", "rule_id", "device_id", "measured_at"]),
                                   at=interval_end, run_id=run_id, source="batch", settings=settings)
        counts["resolved"] = _auto_resolve(connection, interval_end, run_id, rules, settings)
    candidates = silent if len(silent) else pd.DataFrame(columns=CANDIDATE_COLUMNS)
    candidates["as_of"] = interval_end
    return {"silent_devices": len(silent), **counts, "candidates": candidates}
