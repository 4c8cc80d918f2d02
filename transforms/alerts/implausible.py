"""``implausible_vital``: a vital outside the plausibility range is quarantined, and a human is told.

Bronze quarantines a value outside the data contract's range (SpO2 below 50 %, a heart rate below
25/min, a temperature below 30 °C …) with the reason ``out_of_range`` and the field at fault. Such
a value is a sensor fault or a patient in grave danger; either way it must not vanish silently.
This module turns the interval's quarantine rows into candidates of the ``implausible_vital``
rule, for the same upsert as every other rule.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

from kidjamo.lake import reasons
from kidjamo.lake.schema import RANGES
from transforms.alerts.evaluate import CANDIDATE_COLUMNS, LINEAGE_IN_ALERT, evidence_record
from transforms.clinical.rules import RuleSet

MATCH_COLUMNS = ["patient_id", "rule_id", "device_id", "measured_at", "raw_file", "record_index"]
#: Said with every implausible-vital alert (the care screen translates it: care/locale).
QUALIFIER = "value outside the plausible range: check the patient and the sensor"


def _value(original_text: str, field: str):
    section, name = field.split(".", 1)
    try:
        return ((json.loads(original_text) or {}).get(section) or {}).get(name)
    except (ValueError, AttributeError):
        return None


def implausible_candidates(connection, quarantine: pa.Table | None, rules: RuleSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates (one per patient) and matches of the interval's out-of-range vital signs."""
    rule = rules["implausible_vital"]
    fields = [f"vitals.{name}" for name in rule.thresholds.vitals]
    empty = pd.DataFrame(columns=CANDIDATE_COLUMNS), pd.DataFrame(columns=MATCH_COLUMNS)
    if quarantine is None or quarantine.num_rows == 0:
        return empty
    rows = quarantine.to_pandas()
    rows = rows.loc[(rows["reason"] == reasons.OUT_OF_RANGE) & rows["field"].isin(fields)
                    & rows["device_id"].notna() & rows["measured_at"].notna()]
    if rows.empty:
        return empty
    owners = dict(connection.execute("SELECT device_id, patient_id FROM kidjamo.devices WHERE device_id = ANY(%s)",
                                     (list(rows["device_id"].unique()),)).fetchall())
    rows = rows.assign(patient_id=rows["device_id"].map(owners)).dropna(subset=["patient_id"])
    if rows.empty:
        return empty
    rows["measured_at"] = pd.to_datetime(rows["measured_at"], utc=True)
    rows["arrival_minute"] = pd.to_datetime(rows["arrival_minute"], utc=True)
    rows["value"] = [_value(text, field) for text, field in zip(rows["original_text"], rows["field"])]
    ranges = {f"{section}.{name}": [low, high] for (section, name), (_, low, high) in RANGES.items()}
    records = []
    for patient_id, readings in rows.sort_values("measured_at", ascending=False).groupby("patient_id", sort=True):
        latest = readings.iloc[0]
        delay = max((latest["arrival_minute"] + pd.Timedelta(minutes=1) - latest["measured_at"]).total_seconds(), 0.0)
        evidence = evidence_record(
            rule, rules,
            values={field: value for field, value in zip(readings["field"], readings["value"])},
            thresholds={"plausible_ranges": {field: ranges[field] for field in sorted(set(readings["field"]))}},
            baseline={}, device_id=latest["device_id"], measured_at=latest["measured_at"].isoformat(), is_late=False,
            delay_seconds=delay, quarantine_detail=latest["detail"],
            qualifiers=[QUALIFIER],
        )
        records.append({
            "patient_id": patient_id, "rule_id": rule.id, "rule_version": str(rule.version), "severity": rule.severity,
            "superseded": False, "first_reading_at": readings["measured_at"].min(),
            "last_reading_at": readings["measured_at"].max(), "reading_count": len(readings),
            "device_id": latest["device_id"], "is_late": False, "delay_seconds": delay, "evidence": evidence,
            "lineage": [{"device_id": d, "measured_at": m.isoformat(), "raw_file": f, "record_index": int(i)}
                        for d, m, f, i in zip(readings["device_id"], readings["measured_at"], readings["raw_file"],
                                              readings["record_index"])][:LINEAGE_IN_ALERT],
        })
    matches = rows.assign(rule_id=rule.id).drop_duplicates(["device_id", "measured_at"])[MATCH_COLUMNS]
    return pd.DataFrame(records, columns=CANDIDATE_COLUMNS), matches.reset_index(drop=True)
