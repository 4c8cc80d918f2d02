"""Bronze -> silver: deduplicated, attributed to a patient, enriched with indices, scores and flags.

Deduplication keeps the first copy of each (device_id, measured_at) in (arrival minute, raw file,
record index) order, within the batch and against what earlier batches already loaded. A copy that
comes from the same raw record as the loaded row is the same reading being replayed, not a
duplicate, so re-running an interval gives the same silver partitions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kidjamo.jsonable import json_scalar
from kidjamo.warehouse.bulk import stage
from kidjamo.warehouse.database import connect
from kidjamo.lake import reasons
from transforms.clinical import scores
from transforms.clinical.rules import RuleSet
from kidjamo.lake.schema import BRONZE, QUARANTINE, SILVER

LOW_BATTERY_PCT = 15  # the sensor_battery rule (transforms/clinical/rules.yaml)
WEAK_SIGNAL_PCT = 50  # project choice: below half of the sensor's signal-quality scale
LOW_CONFIDENCE_SPO2 = 70  # ISO 80601-2-61: oximeters are specified for accuracy from 70 %


@dataclass
class SilverResult:
    silver: pa.Table
    rejected: pa.Table  # QUARANTINE rows: gate rejections and duplicates of this step
    bronze_rows: int
    gate_rejected: int
    duplicates_in_batch: int
    duplicates_of_earlier: int

    def counts(self) -> dict:
        return {
            "bronze_rows": self.bronze_rows,
            "silver_rows": self.silver.num_rows,
            "gate_rejected": self.gate_rejected,
            "duplicates": self.duplicates_in_batch + self.duplicates_of_earlier,
            "duplicates_in_batch": self.duplicates_in_batch,
            "duplicates_of_earlier_batches": self.duplicates_of_earlier,
        }


LOADED_COLUMNS = ["device_id", "measured_at", "raw_file", "record_index", "loaded_raw_file", "loaded_record_index"]


def loaded_readings(database_url: str, bronze: pa.Table) -> pd.DataFrame:
    """Bronze rows whose (device_id, measured_at) the warehouse already holds from *another* raw record.

    A row loaded from the same raw record is the same reading replayed, so it is not returned. The
    batch's keys and lineage go to a temporary table by COPY (vectorized CSV), then one indexed join.
    Only rows measured no later than their device's latest loaded reading (``kidjamo.device_status``,
    kept by every load) can already be in the warehouse: in an ordinary minute that is none, so the
    index is probed for late or replayed readings only, not once per reading.
    Columns: the bronze row's key and lineage, and ``loaded_raw_file``/``loaded_record_index``.
    """
    if bronze.num_rows == 0:
        return pd.DataFrame(columns=LOADED_COLUMNS)
    keys = bronze.select(["device_id", "measured_at", "raw_file", "record_index"]).combine_chunks()
    low, high = pc.min_max(keys["measured_at"]).values()
    with connect(database_url) as connection:
        stage(connection, "batch_keys", "device_id text, measured_at timestamptz, raw_file text, record_index integer", keys)
        rows = connection.execute(
            """
            WITH maybe_loaded AS MATERIALIZED (
                SELECT k.* FROM batch_keys AS k LEFT JOIN kidjamo.device_status AS s USING (device_id)
                WHERE s.device_id IS NULL OR k.measured_at <= s.last_measured_at
            )
            SELECT k.device_id, k.measured_at, k.raw_file, k.record_index, m.raw_file, m.record_index
            FROM maybe_loaded AS k
            JOIN kidjamo.measurements AS m ON m.device_id = k.device_id AND m.measured_at = k.measured_at
            WHERE m.measured_at BETWEEN %s AND %s
              AND (m.raw_file, m.record_index) IS DISTINCT FROM (k.raw_file, k.record_index)
            """,
            (low.as_py(), high.as_py()),
        ).fetchall()
    return pd.DataFrame(rows, columns=LOADED_COLUMNS)


def bronze_to_silver(
    bronze: pa.Table,
    *,
    registry: pd.DataFrame,
    baselines: pd.DataFrame,
    loaded: pd.DataFrame,
    gate_rejected: pa.Table,
    run_id: str,
    rules: RuleSet,
    late_after: timedelta = timedelta(minutes=5),
) -> SilverResult:
    """Deduplicate, enrich and flag the bronze rows that passed the bronze gate."""
    frame = bronze.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    frame = frame.sort_values(["arrival_minute", "raw_file", "record_index"], kind="stable").reset_index(drop=True)

    is_rejected = _record_key(frame["raw_file"], frame["record_index"]).isin(
        _record_key(pd.Series(gate_rejected.column("raw_file").to_pylist(), dtype="string"),
                    pd.Series(gate_rejected.column("record_index").to_pylist(), dtype="int64"))
    )
    candidates = frame[~is_rejected.to_numpy()]

    in_batch_duplicate = candidates.duplicated(["device_id", "measured_at"], keep="first").to_numpy()
    first_copies = candidates[~in_batch_duplicate]
    lineage = ["device_id", "measured_at", "raw_file", "record_index"]
    earlier = first_copies[lineage].merge(
        loaded.astype({"device_id": "string", "raw_file": "string", "record_index": "int32"}).assign(
            measured_at=lambda f: pd.to_datetime(f["measured_at"], utc=True).dt.as_unit("us")),
        on=lineage, how="left", validate="one_to_one",
    )
    replayed_elsewhere = earlier["loaded_raw_file"].notna().to_numpy(dtype=bool)
    kept = first_copies[~replayed_elsewhere]

    duplicate_rows = pd.concat([candidates[in_batch_duplicate], first_copies[replayed_elsewhere]])
    original_of = _original_readings(candidates, earlier, duplicate_rows)
    rejected = pd.concat(
        [
            _quarantine_rows(frame[is_rejected.to_numpy()], _gate_reasons(gate_rejected, frame[is_rejected.to_numpy()]),
                             _gate_details(gate_rejected), run_id),
            _quarantine_rows(duplicate_rows, reasons.DUPLICATE, original_of, run_id),
        ],
        ignore_index=True,
    )
    silver = enrich_readings(kept, registry, baselines, late_after, rules)
    return SilverResult(
        silver=pa.Table.from_pandas(silver[SILVER.names], schema=SILVER, preserve_index=False),
        rejected=pa.Table.from_pandas(rejected[QUARANTINE.names], schema=QUARANTINE, preserve_index=False),
        bronze_rows=bronze.num_rows,
        gate_rejected=int(is_rejected.sum()),
        duplicates_in_batch=int(in_batch_duplicate.sum()),
        duplicates_of_earlier=int(replayed_elsewhere.sum()),
    )


def _record_key(raw_file: pd.Series, record_index: pd.Series) -> pd.Series:
    return raw_file.astype("string") + "#" + record_index.astype("string")


def enrich_readings(kept: pd.DataFrame, registry: pd.DataFrame, baselines: pd.DataFrame, late_after: timedelta,
                    rules: RuleSet) -> pd.DataFrame:
    """Readings joined with the registry and baselines, with age, scores, indices, quality flags and delay.

    The silver step and the ingestion fast path enrich alike, so the rules see the same columns.
    """
    patients = registry.drop_duplicates("device_id")[["device_id", "birth_date", "genotype", "care_team"]].astype(
        {"device_id": "string"}
    )
    frame = kept.merge(patients, on="device_id", how="left", validate="many_to_one")
    frame = frame.merge(baselines.astype({"patient_id": "string"}), on="patient_id", how="left", validate="many_to_one")
    frame["age_years"] = scores.age_years(frame["birth_date"], frame["measured_at"])
    frame["age_band"] = scores.age_band(frame["age_years"], rules)
    news2 = scores.news2_partial(frame["respiratory_rate"], frame["spo2"], frame["heart_rate"], frame["temperature"], frame["age_years"])
    frame["news2_partial"] = news2["news2_partial"]
    frame["news2_max_parameter"] = news2["news2_max_parameter"]
    heat = scores.heat_index_c(frame["ambient_temp"], frame["ambient_humidity"])
    frame["heat_index_c"] = heat["heat_index_c"]
    frame["heat_index_is_lower_bound"] = heat["heat_index_unknown"]
    frame["physiological_strain_index"] = scores.physiological_strain_index(
        frame["temperature"], frame["heart_rate"], frame["temperature_baseline"], frame["heart_rate_baseline"]
    )
    frame["spo2_low_confidence"] = (frame["spo2"] < LOW_CONFIDENCE_SPO2).fillna(False).astype(bool)
    frame["low_battery"] = (frame["battery_level"] < LOW_BATTERY_PCT).fillna(False).astype(bool)
    frame["weak_signal"] = (frame["signal_quality"] < WEAK_SIGNAL_PCT).fillna(False).astype(bool)
    delay = (frame["arrival_minute"] - frame["measured_at"]).dt.total_seconds()
    frame["delay_seconds"] = delay.astype("float64")
    frame["is_late"] = (delay > late_after.total_seconds()).astype(bool)
    return frame


def _gate_reasons(gate_rejected: pa.Table, rows: pd.DataFrame) -> list[str]:
    """Each rejected row's reason code: the gate's own (``device_flooding``), else ``gate_rejected``."""
    if "reason" not in gate_rejected.column_names:
        return [reasons.GATE_REJECTED] * len(rows)
    by_record = dict(zip(zip(gate_rejected.column("raw_file").to_pylist(), gate_rejected.column("record_index").to_pylist()),
                         gate_rejected.column("reason").to_pylist()))
    return [by_record.get((f, i)) or reasons.GATE_REJECTED for f, i in zip(rows["raw_file"], rows["record_index"])]


def _gate_details(gate_rejected: pa.Table) -> dict[tuple[str, int], str]:
    return {
        (f, i): d
        for f, i, d in zip(
            gate_rejected.column("raw_file").to_pylist(),
            gate_rejected.column("record_index").to_pylist(),
            gate_rejected.column("detail").to_pylist(),
        )
    }


def _original_readings(candidates: pd.DataFrame, earlier: pd.DataFrame, duplicates: pd.DataFrame) -> dict[tuple[str, int], str]:
    """For each duplicate, a detail naming the copy that was kept."""
    first = candidates.drop_duplicates(["device_id", "measured_at"], keep="first").set_index(["device_id", "measured_at"])
    loaded = earlier.dropna(subset=["loaded_raw_file"]).set_index(["device_id", "measured_at"])
    details = {}
    for row in duplicates.itertuples(index=False):  # duplicates are few; this loop is over them only
        key = (row.device_id, row.measured_at)
        if key in loaded.index:
            kept_file, kept_index = loaded.loc[key, "loaded_raw_file"], loaded.loc[key, "loaded_record_index"]
        else:
            kept_file, kept_index = first.loc[key, "raw_file"], first.loc[key, "record_index"]
        details[(row.raw_file, row.record_index)] = (
            f"device_id {row.device_id} measured_at {row.measured_at:%Y-%m-%dT%H:%M:%SZ}: duplicate of {kept_file} record {int(kept_index)}"
        )
    return details


def _quarantine_rows(rows: pd.DataFrame, reason: str | list[str], details: dict, run_id: str) -> pd.DataFrame:
    """QUARANTINE rows (layer ``silver``) for ``rows``; ``reason`` is one code, or one per row."""
    bronze_columns = [name for name in BRONZE.names if name != "ingested_at"]
    original = [
        json.dumps({k: json_scalar(v, timestamp_format="%Y-%m-%dT%H:%M:%S.%fZ") for k, v in record.items()},
                   separators=(",", ":"))
        for record in rows[bronze_columns].to_dict("records")
    ]
    return pd.DataFrame(
        {
            "layer": "silver",
            "reason": reason,
            "field": "device_id,measured_at" if reason == reasons.DUPLICATE else None,
            "detail": [details.get((f, i), reason) for f, i in zip(rows["raw_file"], rows["record_index"])],
            "device_id": rows["device_id"].to_numpy(dtype=object),
            "measured_at": rows["measured_at"].to_numpy(),
            "original_text": original,
            "raw_file": rows["raw_file"].to_numpy(dtype=object),
            "record_index": rows["record_index"].to_numpy(dtype=np.int32),
            "record_hash": rows["record_hash"].to_numpy(dtype=object),
            "arrival_minute": rows["arrival_minute"].to_numpy(),
            "run_id": run_id,
        },
        index=range(len(rows)),
    )


def gate_rejections(silver: pa.Table, rejected: pa.Table, *, run_id: str) -> tuple[pa.Table, pa.Table]:
    """Split silver rows that failed the silver gate off into QUARANTINE rows (layer ``silver``)."""
    if rejected.num_rows == 0:
        return silver, QUARANTINE.empty_table()
    frame = silver.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    keys = _record_key(frame["raw_file"], frame["record_index"])
    failed = keys.isin(_record_key(pd.Series(rejected.column("raw_file").to_pylist(), dtype="string"),
                                   pd.Series(rejected.column("record_index").to_pylist(), dtype="int64"))).to_numpy()
    quarantine = _quarantine_rows(frame[failed], reasons.GATE_REJECTED, _gate_details(rejected), run_id)
    return silver.filter(pa.array(~failed)), pa.Table.from_pandas(quarantine[QUARANTINE.names], schema=QUARANTINE, preserve_index=False)
