"""Raw -> bronze | quarantine: one typed, flattened row per reading, or one quarantine row saying why not.

Parsing takes a vectorized fast path (Arrow's JSON reader over the whole interval) and falls back,
file by file, to a per-record reader only for files the fast path cannot type — a malformed line,
a string where a number belongs. Both paths produce the same typed candidate columns, which then
go through the same vectorized checks (required fields, types, plausibility ranges, timestamps,
the device registry). Each failing record gets the first reason in ``kidjamo.lake.reasons`` order,
the offending field, and a detail a person can act on.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ingestion.to_raw import reconcile_raw_partition
from kidjamo.lake import reasons
from kidjamo.lake.json_safety import MAX_NESTING_DEPTH, describe_control_character, too_deep
from kidjamo.lake.partitions import minutes_between, write_partitions
from kidjamo.lake.records import split_records
from kidjamo.lake.schema import BRONZE, METADATA, OPTIONAL_VITALS, QUARANTINE, RANGES, VITALS
from kidjamo.lake.storage import Lake
from kidjamo.warehouse.locks import PartitionLocks

TOP_LEVEL_STRINGS = ("device_id", "patient_id", "timestamp", "message_id")
# Only what identifies a reading is required: a reading without SpO2 still keeps its temperature.
REQUIRED = ("device_id", "patient_id", "timestamp")
INTEGER_FIELDS = {name for (section, name), spec in RANGES.items() if pa.types.is_integer(spec[0])}
NUMERIC_FIELDS = {name: section for (section, name) in RANGES}  # flattened name -> payload section
KNOWN_VITALS = set(VITALS) | set(OPTIONAL_VITALS)
KNOWN_METADATA = set(METADATA) | {"firmware_version"}
KNOWN_TOP_LEVEL = set(TOP_LEVEL_STRINGS) | {"vitals", "metadata"}
TIMEZONE_SUFFIX = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
CONTROL_CHARACTER_RE2 = r"[\x00-\x1f\x7f-\x{9f}]"  # kidjamo.json_safety.CONTROL_CHARACTER, for Arrow's RE2
TEXT_FIELDS = (*TOP_LEVEL_STRINGS, "firmware_version")

# What Arrow's reader is told to expect. Integers are read as doubles and checked for integrality
# afterwards, so that 3 and 3.0 mean the same on both paths.
_PAYLOAD_SCHEMA = pa.schema(
    [
        *[pa.field(name, pa.string()) for name in TOP_LEVEL_STRINGS],
        pa.field("vitals", pa.struct([pa.field(name, pa.float64()) for name in [*VITALS, *OPTIONAL_VITALS]])),
        pa.field(
            "metadata",
            pa.struct([*[pa.field(name, pa.float64()) for name in METADATA], pa.field("firmware_version", pa.string())]),
        ),
    ]
)
_PARSE_OPTIONS = pajson.ParseOptions(explicit_schema=_PAYLOAD_SCHEMA, unexpected_field_behavior="infer")
CANDIDATE_COLUMNS = [*TOP_LEVEL_STRINGS, *VITALS, *OPTIONAL_VITALS, *METADATA, "firmware_version", "extra_fields"]


#: Quarantine rows of readings kept in bronze with a bad field emptied (they do not count as
#: quarantined records in the accounting: the reading itself reached bronze).
FIELD_LAYER = "bronze_field"
FIELD_QUARANTINE_FILE = "bronze_fields.parquet"


@dataclass
class BronzeResult:
    bronze: pa.Table
    quarantine: pa.Table
    records: int
    fast_path_records: int = 0
    counts_by_reason: dict[str, int] = field(default_factory=dict)
    field_quarantine: pa.Table | None = None

    def counts(self) -> dict:
        return {
            "raw_records": self.records,
            "bronze_rows": self.bronze.num_rows,
            "quarantined": self.quarantine.num_rows,
            "quarantined_by_reason": self.counts_by_reason,
            "extra_fields": int(pc.sum(self.bronze["extra_fields"]).as_py() or 0) if self.bronze.num_rows else 0,
            "fast_path_records": self.fast_path_records,
            "readings_with_emptied_fields": self.field_quarantine.num_rows if self.field_quarantine is not None else 0,
        }


@dataclass
class _RawRecords:
    """Every record of the interval, in (arrival minute, raw file, record index) order."""

    lines: list[bytes] = field(default_factory=list)
    raw_file: list[str] = field(default_factory=list)
    record_index: list[int] = field(default_factory=list)
    arrival_minute: list[datetime] = field(default_factory=list)
    file_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of each file's lines


def _read_raw(lake: Lake, start: datetime, end: datetime, run_id: str, database_url: str | None,
              part: tuple[int, int] | None = None) -> _RawRecords:
    """The records of the interval's raw files; with ``part=(j, n)`` only every n-th file from the j-th
    (in (minute, name) order): the files a to_bronze shard parses."""
    records = _RawRecords()
    with PartitionLocks(database_url) as locks:
        manifests = [(minute, reconcile_raw_partition(lake, minute, run_id=run_id, locks=locks)) for minute in minutes_between(start, end)]
    files = [(minute, name, entry) for minute, manifest in manifests for name, entry in sorted(manifest.items())]
    if part is not None:
        files = files[part[0]::part[1]]
    for minute, name, entry in files:
        lines = split_records(lake.read_bytes(entry["path"]), name)
        first = len(records.lines)
        records.lines.extend(lines)
        records.raw_file.extend([entry["path"]] * len(lines))
        records.record_index.extend(range(len(lines)))
        records.arrival_minute.extend([minute] * len(lines))
        records.file_spans.append((first, len(records.lines)))
    return records


# --- parsing -------------------------------------------------------------------------------------
def _fast_parse(lines: list[bytes]) -> pa.Table:
    """Arrow's reader over NDJSON lines; raises ``pa.ArrowInvalid`` when anything cannot be typed."""
    text = b"\n".join(lines) + b"\n"
    # Arrow's reader crashes the process on a line that is a bare ``null``: such files take the
    # per-record path. (Lines are stripped, and a raw newline cannot occur inside a JSON string.)
    if (b"\n" + text).find(b"\nnull") != -1:
        raise pa.ArrowInvalid("a line starts with null")
    table = pajson.read_json(io.BytesIO(text), parse_options=_PARSE_OPTIONS)
    if table.num_rows != len(lines):
        raise pa.ArrowInvalid("row count differs from line count")
    vitals = table.column("vitals").combine_chunks()
    metadata = table.column("metadata").combine_chunks()
    columns: dict[str, pa.Array] = {name: table.column(name).combine_chunks() for name in TOP_LEVEL_STRINGS}
    for name in [*VITALS, *OPTIONAL_VITALS]:
        columns[name] = vitals.field(name)
    for name in [*METADATA, "firmware_version"]:
        columns[name] = metadata.field(name)
    columns["extra_fields"] = pa.array(_count_unknown_fields(table, vitals, metadata), pa.int16())
    return pa.table(columns)


def _count_unknown_fields(table: pa.Table, vitals: pa.StructArray, metadata: pa.StructArray) -> np.ndarray:
    extra = np.zeros(table.num_rows, dtype=np.int16)
    for name in table.column_names:
        if name not in KNOWN_TOP_LEVEL:
            extra += table.column(name).is_valid().to_numpy(zero_copy_only=False).astype(np.int16)
    for struct, known in ((vitals, KNOWN_VITALS), (metadata, KNOWN_METADATA)):
        for index in range(struct.type.num_fields):
            if struct.type.field(index).name not in known:
                extra += struct.field(index).is_valid().to_numpy(zero_copy_only=False).astype(np.int16)
    return extra


def _slow_parse(lines: list[bytes]) -> tuple[pa.Table, list]:
    """Record by record, for files Arrow cannot type. Returns the candidate columns and parse errors.

    A parse error is a (reason, field, detail) tuple for a record that cannot be kept, or a list of
    such tuples for fields emptied in a record that is kept (a number field holding another type).
    """
    values: dict[str, list] = {name: [] for name in CANDIDATE_COLUMNS}
    errors: list = []
    for line in lines:
        row, error = _parse_record(line)
        errors.append(error if error is not None or row is None else row.pop("field_errors", None))
        for name in CANDIDATE_COLUMNS:
            values[name].append(row.get(name) if row is not None and error is None else None)
    types = {**{n: pa.string() for n in (*TOP_LEVEL_STRINGS, "firmware_version")}, "extra_fields": pa.int16()}
    table = pa.table({name: pa.array(values[name], types.get(name, pa.float64())) for name in CANDIDATE_COLUMNS})
    return table, errors


def _parse_record(line: bytes) -> tuple[dict | None, tuple[str, str | None, str] | None]:
    try:
        document = json.loads(line)
    except ValueError as error:
        return None, (reasons.INVALID_JSON, None, f"not valid JSON: {error}")
    if not isinstance(document, dict):
        return None, (reasons.NOT_AN_OBJECT, None, f"expected a JSON object, got {_json_type(document)}")
    row: dict = {}
    for name in TOP_LEVEL_STRINGS:
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            return None, (reasons.WRONG_TYPE, name, f"{name}: expected a string, got {_json_type(value)} {value!r}")
        row[name] = value
    extra = sum(1 for key, value in document.items() if key not in KNOWN_TOP_LEVEL and value is not None)
    for section, known in (("vitals", KNOWN_VITALS), ("metadata", KNOWN_METADATA)):
        block = document.get(section)
        if block is None:
            block = {}
        elif not isinstance(block, dict):
            return None, (reasons.WRONG_TYPE, section, f"{section}: expected an object, got {_json_type(block)}")
        extra += sum(1 for key, value in block.items() if key not in known and value is not None)
        for name in known:
            value = block.get(name)
            path = f"{section}.{name}"
            if name == "firmware_version":
                if value is not None and not isinstance(value, str):
                    return None, (reasons.WRONG_TYPE, path, f"{path}: expected a string, got {_json_type(value)} {value!r}")
                row[name] = value
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                row.setdefault("field_errors", []).append(
                    (reasons.WRONG_TYPE, path, f"{path}: expected a number, got {_json_type(value)} {value!r}"))
                value = None
            row[name] = None if value is None else float(value)
    row["extra_fields"] = extra
    return row, None


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _nesting_errors(lines: list[bytes]) -> list[tuple[str, str | None, str] | None]:
    """Records nested too deep for any parser (Arrow's reader crashes, json raises RecursionError), found on the bytes."""
    return [(reasons.TOO_DEEP, None, f"nested more than {MAX_NESTING_DEPTH} levels deep: not parsed")
            if too_deep(line) else None for line in lines]


def _parse(records: _RawRecords) -> tuple[pa.Table, list, int]:
    """Typed candidate columns for every record, their parse errors, and how many took the fast path."""
    if not records.lines:
        return _slow_parse([])[0], [], 0
    nesting = _nesting_errors(records.lines)
    # A record too deep to parse is replaced by an empty object; its own error wins below.
    all_lines = [b"{}" if error else line for line, error in zip(records.lines, nesting)] if any(nesting) else records.lines
    try:
        return _fast_parse(all_lines), nesting, len(all_lines)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    parts: list[pa.Table] = []
    errors: list = []
    fast = 0
    for first, last in records.file_spans:
        lines = all_lines[first:last]
        if not lines:
            continue
        try:
            parts.append(_fast_parse(lines))
            errors.extend([None] * len(lines))
            fast += len(lines)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            table, file_errors = _slow_parse(lines)
            parts.append(table)
            errors.extend(file_errors)
    unified = [part.select(CANDIDATE_COLUMNS).cast(_slow_parse([])[0].schema) for part in parts]
    return pa.concat_tables(unified), [deep or error for deep, error in zip(nesting, errors)], fast


# --- checks --------------------------------------------------------------------------------------
def outside_timestamp_window(measured_at: pd.Series, arrival_minute: pd.Series, lateness: timedelta,
                             future_tolerance: timedelta) -> tuple[np.ndarray, np.ndarray]:
    """(future, too_late) per reading: measured more than ``future_tolerance`` after the end of its
    arrival minute, or more than ``lateness`` before it. The ingestion fast path applies the same window."""
    ahead = (measured_at - (arrival_minute + pd.Timedelta(minutes=1))).to_numpy()
    behind = (arrival_minute - measured_at).to_numpy()
    future = ~pd.isna(ahead) & (ahead > np.timedelta64(future_tolerance))
    too_late = ~pd.isna(behind) & (behind > np.timedelta64(lateness))
    return future, too_late


def _check(frame: pd.DataFrame, parse_errors: list, non_finite: dict[str, np.ndarray], control: dict[str, np.ndarray],
           registry: pd.DataFrame, lateness: timedelta, future_tolerance: timedelta,
           ) -> tuple[np.ndarray, np.ndarray, list[str | None], dict]:
    """First failing reason per row (or None), its field, and a detail; vectorized except for details.

    A bad value of one field (wrong type, not finite, out of range) does not fail the row: it is
    returned in the fourth value, {row: [(reason, field, detail), ...]}, for rows that are kept.
    """
    rows = len(frame)
    record_errors = [e if isinstance(e, tuple) else None for e in parse_errors]
    reason = np.array([e[0] if e else None for e in record_errors], dtype=object) if rows else np.array([], dtype=object)
    failed_field = np.array([e[1] if e else None for e in record_errors], dtype=object) if rows else np.array([], dtype=object)
    details: list[str | None] = [e[2] if e else None for e in record_errors]
    field_issues: dict[int, list[tuple[str, str, str]]] = {i: list(e) for i, e in enumerate(parse_errors) if isinstance(e, list)}

    def field_flag(mask: np.ndarray, code: str, field_name: str, describe) -> None:
        for index in np.flatnonzero(mask):
            field_issues.setdefault(int(index), []).append((code, field_name, describe(index)))

    def flag(mask: np.ndarray, code: str, field_name: str, describe) -> None:
        fresh = mask & pd.isna(reason)
        if not fresh.any():
            return
        reason[fresh] = code
        failed_field[fresh] = field_name
        for index in np.flatnonzero(fresh):
            details[index] = describe(index)

    for name, has_control in control.items():
        path = f"metadata.{name}" if name == "firmware_version" else name
        flag(has_control, reasons.INVALID_TEXT, path,
             lambda i, p=path, n=name: f"{p}: {describe_control_character(frame[n].iloc[i])}; text may not contain control characters")

    parsed = pd.isna(reason)
    for path in REQUIRED:
        name = path.split(".")[-1]
        column = frame[name]
        missing = column.isna().to_numpy()
        if name in TOP_LEVEL_STRINGS:
            missing = missing | (column.str.strip() == "").fillna(False).to_numpy(dtype=bool)
        flag(parsed & missing, reasons.MISSING_FIELD, path, lambda i, p=path: f"{p}: required, but absent or empty")
    for name in INTEGER_FIELDS:
        values = frame[name].to_numpy(dtype=float, na_value=np.nan)
        fractional = ~np.isnan(values) & (np.mod(values, 1) != 0)
        path = f"{NUMERIC_FIELDS[name]}.{name}"
        field_flag(fractional, reasons.WRONG_TYPE, path, lambda i, p=path, v=values: f"{p}: expected an integer, got {v[i]:g}")
    for name, not_finite in non_finite.items():
        path = f"{NUMERIC_FIELDS[name]}.{name}"
        field_flag(not_finite, reasons.WRONG_TYPE, path, lambda i, p=path: f"{p}: expected a finite number, got NaN or Infinity")

    timestamp = frame["timestamp"].astype("string")
    has_zone = timestamp.str.strip().str.contains(TIMEZONE_SUFFIX, regex=True).fillna(False).to_numpy(dtype=bool)
    measured_at = pd.to_datetime(timestamp.where(has_zone), utc=True, format="ISO8601", errors="coerce")
    bad_timestamp = timestamp.notna().to_numpy(dtype=bool) & measured_at.isna().to_numpy()
    flag(bad_timestamp, reasons.BAD_TIMESTAMP, "timestamp",
         lambda i: f"timestamp: expected an ISO-8601 instant with a time zone (2025-08-18T10:30:00Z), got {timestamp.iloc[i]!r}")

    for (section, name), (_, low, high) in RANGES.items():
        values = frame[name].to_numpy(dtype=float, na_value=np.nan)
        outside = ~np.isnan(values) & ((values < low) | (values > high))
        path = f"{section}.{name}"
        field_flag(outside, reasons.OUT_OF_RANGE, path,
             lambda i, p=path, v=values, lo=low, hi=high: f"{p}: {v[i]:g} is outside the plausible range {lo:g} to {hi:g}")

    arrival = pd.to_datetime(frame["arrival_minute"], utc=True)
    future, too_late = outside_timestamp_window(measured_at, arrival, lateness, future_tolerance)
    flag(future, reasons.FUTURE_TIMESTAMP, "timestamp",
         lambda i: f"timestamp: {timestamp.iloc[i]} is more than {future_tolerance} after the file arrived ({arrival.iloc[i]:%Y-%m-%dT%H:%MZ})")
    flag(too_late, reasons.TOO_LATE, "timestamp",
         lambda i: f"timestamp: {timestamp.iloc[i]} is older than the lateness limit ({lateness}) at arrival {arrival.iloc[i]:%Y-%m-%dT%H:%MZ}")

    # Registry lookups in Arrow: the position of each device in the registry, then its patient and status.
    position = pc.index_in(pa.Array.from_pandas(frame["device_id"], type=pa.string()),
                           value_set=pa.array(registry["device_id"], pa.string()))
    registered_patient = pc.take(pa.array(registry["patient_id"], pa.string()), position)
    active = pc.fill_null(pc.take(pa.array(registry["device_active"], pa.bool_()), position), False)
    unknown = pc.invert(active).to_numpy(zero_copy_only=False)
    flag(unknown, reasons.UNKNOWN_DEVICE, "device_id",
         lambda i: f"device_id: {frame['device_id'].iloc[i]!r} is not an active device of the patient registry")
    mismatch = pc.fill_null(pc.not_equal(registered_patient, pa.Array.from_pandas(frame["patient_id"], type=pa.string())),
                            False).to_numpy(zero_copy_only=False)
    flag(mismatch, reasons.DEVICE_PATIENT_MISMATCH, "patient_id",
         lambda i: f"patient_id: device {frame['device_id'].iloc[i]!r} belongs to {registered_patient[i].as_py()!r}, not {frame['patient_id'].iloc[i]!r}")
    frame["measured_at"] = measured_at
    kept_issues = {index: issues for index, issues in field_issues.items() if pd.isna(reason[index])}
    return reason, failed_field, details, kept_issues


def raw_to_bronze(
    lake: Lake,
    start: datetime,
    end: datetime,
    *,
    run_id: str,
    registry: pd.DataFrame,
    ingested_at: datetime,
    lateness: timedelta = timedelta(days=7),
    future_tolerance: timedelta = timedelta(minutes=5),
    write: bool = True,
    database_url: str | None = None,
    part: tuple[int, int] | None = None,
) -> BronzeResult:
    """Type every raw record of arrival minutes [start, end); write bronze and quarantine partitions.

    Each raw partition's listing is compared with its manifest first: unlisted raw files are adopted
    (under the partition's lock when ``database_url`` is given), listed ones that are gone fail the step.
    ``part=(j, n)`` types only the raw files of to_bronze shard j of n (:func:`_read_raw`).
    """
    records = _read_raw(lake, start, end, run_id, database_url, part)
    candidates, parse_errors, fast = _parse(records)
    frame = candidates.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    frame["arrival_minute"] = pd.to_datetime(pd.Series(records.arrival_minute, dtype=object), utc=True) if records.lines else pd.Series([], dtype="datetime64[us, UTC]")
    non_finite = {
        name: pc.fill_null(pc.or_(pc.is_nan(candidates[name]), pc.is_inf(candidates[name])), False).to_numpy(zero_copy_only=False)
        for name in NUMERIC_FIELDS
    }
    control = {
        name: pc.fill_null(pc.match_substring_regex(candidates[name], CONTROL_CHARACTER_RE2), False).to_numpy(zero_copy_only=False)
        for name in TEXT_FIELDS
    }
    reason, failed_field, details, field_issues = _check(frame, parse_errors, non_finite, control, registry, lateness,
                                                         future_tolerance)
    candidates = _empty_bad_fields(candidates, field_issues)

    record_hash = [hashlib.sha256(line).hexdigest() for line in records.lines]
    lineage = {
        "raw_file": pa.array(records.raw_file, pa.string()),
        "record_index": pa.array(records.record_index, pa.int32()),
        "record_hash": pa.array(record_hash, pa.string()),
        "arrival_minute": pa.array(records.arrival_minute, BRONZE.field("arrival_minute").type),
    }
    good = pd.isna(reason)
    bronze = _bronze_table(candidates, frame, lineage, good, ingested_at)
    quarantine = _quarantine_table(frame, lineage, ~good, reason, failed_field, details, records.lines, run_id)
    field_quarantine = _field_quarantine_table(frame, lineage, field_issues, records.lines, run_id)
    counts_by_reason = {str(code): int(n) for code, n in zip(*np.unique(reason[~good].astype(str), return_counts=True))} if (~good).any() else {}
    if write:
        write_partitions(lake, "bronze", bronze, start, end, "part-0.parquet")
        write_partitions(lake, "quarantine", quarantine, start, end, "bronze.parquet")
        write_partitions(lake, "quarantine", field_quarantine, start, end, FIELD_QUARANTINE_FILE)
    return BronzeResult(bronze, quarantine, len(records.lines), fast, counts_by_reason, field_quarantine)


def _empty_bad_fields(candidates: pa.Table, field_issues: dict) -> pa.Table:
    """The candidates with every field listed in ``field_issues`` set to null (the reading itself is kept)."""
    for name in NUMERIC_FIELDS:
        path = f"{NUMERIC_FIELDS[name]}.{name}"
        rows = [index for index, issues in field_issues.items() if any(field == path for _, field, _ in issues)]
        if rows:
            bad = np.zeros(candidates.num_rows, dtype=bool)
            bad[rows] = True
            column = candidates.column(name)
            emptied = pc.if_else(pa.array(bad), pa.nulls(candidates.num_rows, column.type), column)
            candidates = candidates.set_column(candidates.schema.get_field_index(name), name, emptied)
    return candidates


def _field_quarantine_table(frame, lineage, field_issues: dict, lines, run_id) -> pa.Table:
    """One row per kept reading that lost fields: the first reason, every field, and what each held."""
    rows = len(frame)
    mask = np.zeros(rows, dtype=bool)
    reason = np.full(rows, None, dtype=object)
    failed_field = np.full(rows, None, dtype=object)
    details: list[str | None] = [None] * rows
    for index, issues in field_issues.items():
        mask[index] = True
        reason[index] = issues[0][0]
        failed_field[index] = ", ".join(field for _, field, _ in issues)
        details[index] = "; ".join(detail for _, _, detail in issues) + " (the reading is kept without this value)"
    return _quarantine_table(frame, lineage, mask, reason, failed_field, details, lines, run_id, layer=FIELD_LAYER)


def _bronze_table(candidates: pa.Table, frame: pd.DataFrame, lineage: dict, good: np.ndarray, ingested_at: datetime) -> pa.Table:
    mask = pa.array(good, pa.bool_())
    kept = candidates.filter(mask)
    columns = {}
    for schema_field in BRONZE:
        name = schema_field.name
        if name in lineage:
            columns[name] = lineage[name].filter(mask)
        elif name == "ingested_at":
            columns[name] = pa.array([ingested_at] * kept.num_rows, schema_field.type)
        elif name == "measured_at":
            columns[name] = pa.array(frame.loc[good, "measured_at"].dt.as_unit("us"), schema_field.type)
        else:
            columns[name] = kept[name].cast(schema_field.type)
    return pa.table(columns, schema=BRONZE)


def _quarantine_table(frame, lineage, bad, reason, failed_field, details, lines, run_id, layer: str = "bronze") -> pa.Table:
    indices = np.flatnonzero(bad)
    measured = frame["measured_at"].iloc[indices]
    device = frame["device_id"].iloc[indices]
    return pa.table(
        {
            "layer": pa.array([layer] * len(indices), pa.string()),
            "reason": pa.array(reason[indices].tolist(), pa.string()),
            "field": pa.array(failed_field[indices].tolist(), pa.string()),
            "detail": pa.array([details[i] for i in indices], pa.string()),
            "device_id": _storable(pa.array(device.to_numpy(dtype=object, na_value=None).tolist(), pa.string())),
            "measured_at": pa.array(measured.dt.as_unit("us") if len(indices) else [], QUARANTINE.field("measured_at").type),
            "original_text": _storable(pa.array([lines[i].decode("utf-8", errors="replace") for i in indices], pa.string())),
            "raw_file": lineage["raw_file"].take(pa.array(indices, pa.int64())),
            "record_index": lineage["record_index"].take(pa.array(indices, pa.int64())),
            "record_hash": lineage["record_hash"].take(pa.array(indices, pa.int64())),
            "arrival_minute": lineage["arrival_minute"].take(pa.array(indices, pa.int64())),
            "run_id": pa.array([run_id] * len(indices), pa.string()),
        },
        schema=QUARANTINE,
    )


def _storable(text: pa.Array) -> pa.Array:
    """Text PostgreSQL can hold: a NUL (raw, or decoded from ``\\u0000``) is written as the JSON escape ``\\u0000``."""
    return pc.replace_substring(text, "\x00", "\\u0000")
