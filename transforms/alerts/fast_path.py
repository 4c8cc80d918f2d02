"""The fast path: a critical alert within seconds of a reading arriving, before the minute batch.

The ingestion service asks :func:`is_critical` for every accepted reading (the thresholds are the
``fast_path`` entries of ``transforms/clinical/rules.yaml``, nowhere else) and hands the critical
ones to :func:`raise_fast_path_alert`; the minute batch later attaches to the same open alert.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from kidjamo.lake.schema import VITALS
from kidjamo.settings import Settings
from kidjamo.warehouse.database import connect
from transforms.alerts.evaluate import CANDIDATE_COLUMNS, evidence_record
from transforms.alerts.store import upsert_candidates
from transforms.clinical.rules import Rule, RuleSet


def fast_path_crossings(reading: dict, rules: RuleSet) -> list[tuple[Rule, dict, dict]]:
    """(rule, values, fast-path thresholds) of every rule whose fast-path threshold the payload crosses."""
    vitals = reading.get("vitals") or {}
    spo2, temperature = vitals.get("spo2"), vitals.get("temperature")
    fired = []
    for rule in rules.rules.values():
        fast = rule.fast_path
        if fast is None:
            continue
        if fast.spo2_below is not None and _is_number(spo2) and spo2 < fast.spo2_below:
            fired.append((rule, {"spo2": spo2}, fast.model_dump(exclude_none=True)))
        elif fast.temperature_at_least is not None and _is_number(temperature) and temperature >= fast.temperature_at_least:
            fired.append((rule, {"temperature": temperature}, fast.model_dump(exclude_none=True)))
    return fired


def is_critical(reading: dict, rules: RuleSet) -> bool:
    """A reading crossing a fast-path threshold with a plausible value (implausible ones go to quarantine)."""
    return any(all(_is_number(value) and VITALS[name][1] <= value <= VITALS[name][2] for name, value in values.items())
               for _, values, _ in fast_path_crossings(reading, rules))


def _is_number(value) -> bool:
    return isinstance(value, (int, float))


def raise_fast_path_alert(database_url: str, reading: dict, *, received_at: datetime, rules: RuleSet,
                          settings: Settings) -> int | None:
    """Open (or update) a critical alert at once for a raw payload crossing a fast-path threshold.

    ``reading`` is a payload as the ingestion service accepts it (docs/ingestion.md: device_id, patient_id, timestamp, vitals…). Returns the
    alert id, or None when nothing crosses a threshold or the patient is not registered. The
    reading is attached to the alert, so the minute batch updates this alert instead of counting
    the reading again.
    """
    fired = fast_path_crossings(reading, rules)
    if not fired:
        return None
    measured_at = pd.Timestamp(reading["timestamp"]).tz_convert("UTC") if pd.Timestamp(reading["timestamp"]).tzinfo \
        else pd.Timestamp(reading["timestamp"]).tz_localize("UTC")
    delay = max((received_at - measured_at.to_pydatetime()).total_seconds(), 0.0)
    is_late = delay > settings.late_after.total_seconds()
    records, matches = [], []
    for rule, values, thresholds in fired:
        evidence = evidence_record(
            rule, rules, values=values, thresholds={"fast_path": thresholds, **rule.thresholds.model_dump()},
            baseline={}, device_id=reading.get("device_id"), measured_at=measured_at.isoformat(), is_late=is_late,
            delay_seconds=delay, fast_path=True, message_id=reading.get("message_id"),
        )
        records.append({"patient_id": reading["patient_id"], "rule_id": rule.id, "rule_version": str(rule.version),
                        "severity": rule.severity, "superseded": False, "first_reading_at": measured_at,
                        "last_reading_at": measured_at, "reading_count": 1, "device_id": reading.get("device_id"),
                        "is_late": is_late, "delay_seconds": delay, "evidence": evidence,
                        "lineage": [{"device_id": reading.get("device_id"), "measured_at": measured_at.isoformat(),
                                     "message_id": reading.get("message_id"), "source": "fast_path"}]})
        matches.append({"patient_id": reading["patient_id"], "rule_id": rule.id, "device_id": reading.get("device_id"),
                        "measured_at": measured_at})
    with connect(database_url, application_name="kidjamo-fast-path") as connection:
        upsert_candidates(connection, pd.DataFrame(records, columns=CANDIDATE_COLUMNS), pd.DataFrame(matches),
                           at=received_at, run_id=None, source="fast_path", settings=settings)
        row = connection.execute(
            "SELECT alert_id FROM kidjamo.alerts WHERE patient_id = %s AND rule_id = ANY(%s) AND status <> 'resolved'"
            " ORDER BY kidjamo.severity_rank(severity) DESC, alert_id LIMIT 1",
            (reading["patient_id"], [rule.id for rule, _, _ in fired]),
        ).fetchone()
    return row[0] if row else None
