"""The clinical rules over readings (pure: no database, no clock).

:func:`evaluate_rules` runs every rule of ``transforms/clinical/rules.yaml`` over a batch's silver
readings, with recent history for the rules that span batches (severe pain within a window,
flatline): one candidate per (patient, rule) with its evidence and lineage.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import numpy as np
import pandas as pd

from kidjamo.jsonable import json_scalar
from transforms.clinical import scores
from transforms.clinical.matching import EVIDENCE_VALUES, MATCHERS
from transforms.clinical.rules import SEVERITY_RANK, Rule, RuleSet

#: Columns the rules read; missing ones are treated as not measured.
READING_COLUMNS = {
    "spo2": "float64", "heart_rate": "float64", "temperature": "float64", "ambient_temp": "float64",
    "respiratory_rate": "float64", "hydration_pct": "float64", "activity_level": "float64", "pain_scale": "float64",
    "ambient_humidity": "float64", "battery_level": "float64", "age_years": "float64",
    "spo2_baseline": "float64", "heart_rate_baseline": "float64", "temperature_baseline": "float64",
    "hydration_baseline": "float64", "heat_index_c": "float64", "delay_seconds": "float64",
}
LINEAGE_IN_ALERT = 20  # the alert row keeps the latest readings; alert_readings keeps all of them
CANDIDATE_COLUMNS = ["patient_id", "rule_id", "rule_version", "severity", "superseded", "first_reading_at",
                     "last_reading_at", "reading_count", "device_id", "is_late", "delay_seconds", "evidence", "lineage"]



def _prepare(silver: pd.DataFrame, history: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Batch and history readings in one frame, sorted by patient and time, with every rule input."""
    batch = silver.assign(in_batch=True)  # copy on write: the caller's frame is left as it was
    parts = [batch]
    if history is not None and len(history):
        past = history.assign(in_batch=False)
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
    if "news2_measured_sum" not in frame:
        news2 = scores.news2_partial(frame["respiratory_rate"], frame["spo2"], frame["heart_rate"], frame["temperature"],
                                     frame["age_years"])
        frame = frame.drop(columns=["news2_partial", "news2_max_parameter"], errors="ignore").join(news2)
    for column, default in (("is_late", False), ("raw_file", None), ("record_index", None)):
        if column not in frame:
            frame[column] = default
    frame["is_late"] = frame["is_late"].fillna(False).astype(bool)
    frame["delay_seconds"] = frame["delay_seconds"].fillna(0.0)
    return frame


NORMAL_COLUMNS = ["patient_id", "rule_id", "normal_at"]


def match_and_clear(silver: pd.DataFrame, history: pd.DataFrame | None, *, rules: RuleSet,
                    only: Collection[str] | None = None,
                    normals_for: Collection[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Matches of the batch (see :func:`match_readings`) and its *normal* readings per rule.

    A reading is normal for a rule when every parameter of the rule's ``resolve_on`` was measured
    and the rule did not match: only such a reading, not an absent one, lets an alert resolve.
    The second frame holds (patient_id, rule_id, normal_at), the latest normal batch reading.
    ``only`` restricts the rules judged (the fast path judges the single-reading ones).
    ``normals_for`` restricts the normal readings to these patients (those with an unresolved
    alert) and to the patients a rule matched in the batch: the rest could resolve nothing, and
    at 100,000 patients they are ~2 million rows.
    """
    frame = _prepare(silver, history, rules)
    matches, normals = [], []
    # The frame is sorted by patient then time: a patient's latest row of a subset is the subset's
    # last row before the patient code changes (plain NumPy, not a group-by per rule).
    patient_codes, patients = pd.factorize(frame["patient_id"], sort=False)
    in_batch = frame["in_batch"].to_numpy(dtype=bool)
    measured_at = frame["measured_at"]
    for rule_id, matcher in MATCHERS.items():
        if only is not None and rule_id not in only:
            continue
        rule = rules[rule_id]
        severity = matcher(frame, rule, rules)
        hit = severity.notna() & frame["in_batch"]
        if hit.any():
            matched = frame.loc[hit].copy()
            matched["rule_id"] = rule_id
            matched["severity"] = severity[hit]
            matches.append(matched)
        if rule.auto_resolve and rule.resolve_on:
            measured = frame[list(rule.resolve_on)].notna().all(axis=1).to_numpy(dtype=bool)
            rows = np.flatnonzero(severity.isna().to_numpy(dtype=bool) & measured & in_batch & (patient_codes >= 0))
            if len(rows):
                codes = patient_codes[rows]
                normals.append((rule_id, rows[np.append(codes[1:] != codes[:-1], True)]))
    if normals_for is not None:
        wanted = np.zeros(len(patients), dtype=bool)
        patient_index = pd.Index(patients)
        for chosen in [pd.Index(list(normals_for)), *(pd.Index(m["patient_id"].unique()) for m in matches)]:
            codes = patient_index.get_indexer(chosen)
            wanted[codes[codes >= 0]] = True
        normals = [(rule_id, latest[wanted[patient_codes[latest]]]) for rule_id, latest in normals]
    normal_frame = pd.concat(
        [pd.DataFrame({"patient_id": patients[patient_codes[latest]], "rule_id": rule_id,
                       "normal_at": measured_at.array[latest]}) for rule_id, latest in normals],
        ignore_index=True)[NORMAL_COLUMNS] if normals else pd.DataFrame(columns=NORMAL_COLUMNS)
    if not matches:
        empty = frame.iloc[0:0].assign(rule_id=pd.Series(dtype="object"), severity=pd.Series(dtype="object"))
        return empty, normal_frame
    return pd.concat(matches, ignore_index=True), normal_frame


def match_readings(silver: pd.DataFrame, history: pd.DataFrame, *, rules: RuleSet) -> pd.DataFrame:
    """One row per (batch reading, matching rule): the reading's columns plus ``rule_id`` and ``severity``."""
    return match_and_clear(silver, history, rules=rules)[0]


def json_value(value):
    """A value as evidence JSON holds it: None for missing, floats to 3 decimals, instants in ISO 8601."""
    return json_scalar(value, digits=3)


def _thresholds(rule_id: str, band_id, rules: RuleSet) -> dict:
    thresholds = rules[rule_id].thresholds.model_dump()
    if rule_id in ("tachypnoea", "bradypnoea", "acs_pattern", "heart_rate") and isinstance(band_id, str):
        vital = "heart_rate" if rule_id == "heart_rate" else "respiratory_rate"
        thresholds[f"{vital}_band"] = {"age_band": band_id, **getattr(rules.band(band_id), vital).model_dump()}
    if rule_id == "acs_pattern":
        thresholds["spo2_drop"] = rules["spo2_drop"].thresholds.model_dump()
    if rule_id == "heat_dehydration":
        thresholds["dehydration"] = rules["dehydration"].thresholds.model_dump()
    return thresholds


def rule_summary(rule: Rule, rules: RuleSet) -> dict:
    """The rule as an alert's evidence names it: id, version, title, condition and published source."""
    return {"id": rule.id, "version": rule.version, "title": rule.title, "condition": rule.condition,
            "source": rule.source, "ruleset_version": rules.ruleset_version}


def evidence_record(rule: Rule, rules: RuleSet, *, values: dict, thresholds: dict, baseline: dict, device_id,
                    measured_at: str | None, is_late: bool, delay_seconds, **extra) -> dict:
    """The evidence kept with an alert (one shape for batch, silent-device and fast-path alerts)."""
    return {"rule": rule_summary(rule, rules), "values": values, "thresholds": thresholds, "baseline": baseline,
            "device_id": device_id, "measured_at": measured_at, "is_late": is_late, "delay_seconds": delay_seconds,
            **extra}


BASELINE_NAMES = ("spo2_baseline", "heart_rate_baseline", "temperature_baseline", "hydration_baseline")
QUALIFIER_COLUMNS = ("spo2_low_confidence", "weak_signal", "signal_quality", "activity_level", "ambient_temp",
                     "ambient_humidity")
ACTIVE_FROM_LEVEL = 6  # activity 6-10 of 10: exertion raises heart and breathing rates


def reading_qualifiers(row: dict, rule_id: str) -> list[str]:
    """What a clinician should weigh with the values: never a reason to suppress an alert, always said."""
    qualifiers = []
    if row.get("spo2_low_confidence") is True:
        qualifiers.append("SpO2 below 70 %: outside the oximeter's specified accuracy (low confidence)")
    if row.get("weak_signal") is True:
        quality = json_value(row.get("signal_quality"))
        qualifiers.append("weak sensor signal" + (f" (quality {quality:g} %)" if isinstance(quality, (int, float)) else ""))
    activity = json_value(row.get("activity_level"))
    if isinstance(activity, (int, float)) and activity >= ACTIVE_FROM_LEVEL:
        qualifiers.append(f"patient active (activity {activity:g}/10)")
    if rule_id == "heat_exposure" and json_value(row.get("ambient_humidity")) is None:
        qualifiers.append("heat index unknown (no humidity measured): judged on the ambient temperature")
    return qualifiers


def _evidences(worst: pd.DataFrame, rules: RuleSet) -> list[dict]:
    """Evidence of each candidate, from its most severe reading: values, thresholds, baseline."""
    thresholds_cache: dict[tuple, dict] = {}
    evidences = []
    needed = {"rule_id", "age_band", "device_id", "measured_at", "is_late", "delay_seconds", *BASELINE_NAMES,
              *QUALIFIER_COLUMNS, *(name for names in EVIDENCE_VALUES.values() for name in names)}
    for row in worst[[column for column in worst.columns if column in needed]].to_dict("records"):
        rule_id, band = row["rule_id"], row.get("age_band")
        band = band if isinstance(band, str) else None
        if (rule_id, band) not in thresholds_cache:
            thresholds_cache[(rule_id, band)] = _thresholds(rule_id, band, rules)
        evidences.append(evidence_record(
            rules[rule_id], rules,
            values={name: json_value(row.get(name)) for name in EVIDENCE_VALUES.get(rule_id, [])},
            thresholds=thresholds_cache[(rule_id, band)],
            baseline={name: json_value(row.get(name)) for name in BASELINE_NAMES},
            device_id=row["device_id"], measured_at=json_value(row["measured_at"]), is_late=bool(row["is_late"]),
            delay_seconds=json_value(row["delay_seconds"]), age_band=band,
            qualifiers=reading_qualifiers(row, rule_id),
        ))
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
    entries = [{"device_id": d, "measured_at": m.isoformat(), "raw_file": r, "record_index": json_value(i)}
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
                   rules: RuleSet) -> pd.DataFrame:
    """Candidates of the batch: one row per (patient, rule) that matched at least one batch reading.

    ``silver`` holds the batch's readings (columns of ``kidjamo.lake.schema.SILVER``); ``history``
    recent readings of the same patients (columns of ``kidjamo.measurements``) for the rules that
    span batches. Columns: patient_id, rule_id, rule_version, severity (most severe matching
    reading), superseded (a more specific rule of the same patient matched too: it only updates an
    already open alert), first/last_reading_at, reading_count, device_id, is_late and
    delay_seconds (of the latest matching reading), evidence (values, thresholds, baseline) and
    lineage (raw_file, record_index of the latest readings), as_of.
    """
    if silver is None or len(silver) == 0:
        return pd.DataFrame(columns=[*CANDIDATE_COLUMNS, "as_of"])
    candidates = candidates_from_matches(match_readings(silver, history, rules=rules), rules)
    candidates["as_of"] = as_of
    return candidates
