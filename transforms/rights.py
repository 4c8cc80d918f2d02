"""RGPD rights of a patient: access (export everything held on them) and erasure (database and lake).

Both are audited (``kidjamo.warehouse.audit``); erasure also drops the patient's pseudonyms
(``kidjamo.warehouse.pseudonyms``) and refreshes the analytics views that held them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kidjamo.warehouse.audit import record_audit_event, set_actor
from kidjamo.warehouse.database import connect
from kidjamo.warehouse.locks import PartitionLocks
from kidjamo.lake.storage import Lake
from kidjamo.lake.records import decompress, is_landing_file, split_records
from transforms.views import refresh_views

# --- the rows held on one patient --------------------------------------------------------------
@dataclass(frozen=True)
class PatientRows:
    """How to find one patient's rows in one table: ``SELECT ... FROM table WHERE predicate``."""

    table: str  # schema-qualified
    predicate: str  # SQL over psycopg named parameters %(patient_id)s and %(device_ids)s
    parents: tuple[str, ...] = ()  # tables of this plan it references (delete it before them)


_SPECIAL_TABLES = {"kidjamo.audit_log", "kidjamo.pseudonyms"}


def patient_row_plan(connection: psycopg.Connection) -> list[PatientRows]:
    """Every table of schema kidjamo that can hold a patient's rows, children before parents.

    A table with a ``patient_id`` column matches on it; one with only ``device_id`` matches the
    patient's devices (``original_text`` too: a quarantined record that names the patient). Tables
    that reference those by foreign key (alert events, notifications, device credentials...) follow
    through the key. Found from the catalog, so tables added by later migrations are covered.
    """
    columns: dict[str, set[str]] = {}
    for table, column in connection.execute(
        """
        SELECT c.oid::regclass::text, a.attname FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'kidjamo' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        """
    ):
        columns.setdefault(table, set()).add(column)
    references = connection.execute(
        """
        SELECT con.conrelid::regclass::text, con.confrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(number, i)
                     JOIN pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = k.number ORDER BY k.i),
               ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(number, i)
                     JOIN pg_attribute AS a ON a.attrelid = con.confrelid AND a.attnum = k.number ORDER BY k.i)
        FROM pg_constraint AS con JOIN pg_namespace AS n ON n.oid = con.connamespace
        WHERE con.contype = 'f' AND n.nspname = 'kidjamo'
        """
    ).fetchall()

    predicates: dict[str, str] = {}
    for table, names in columns.items():
        if table in _SPECIAL_TABLES:
            continue
        if "patient_id" in names:
            predicates[table] = "patient_id = %(patient_id)s"
        elif "device_id" in names:
            predicate = "device_id = ANY(%(device_ids)s)"
            if "original_text" in names:
                predicate = f"({predicate} OR strpos(original_text, %(quoted_patient_id)s) > 0)"
            predicates[table] = predicate
    # Children reached only through a foreign key (e.g. alert_events -> alerts), to a fixed point.
    changed = True
    while changed:
        changed = False
        for child, parent, child_columns, parent_columns in references:
            if child in predicates or child in _SPECIAL_TABLES or parent not in predicates:
                continue
            predicates[child] = (
                f"({', '.join(child_columns)}) IN (SELECT {', '.join(parent_columns)} FROM {parent} WHERE {predicates[parent]})"
            )
            changed = True

    parents = {table: {p for c, p, _, _ in references if c == table and p in predicates and p != table} for table in predicates}
    ordered: list[PatientRows] = []
    remaining = dict(parents)
    while remaining:
        # a table goes once no remaining table still references it
        ready = sorted(t for t in remaining if not any(t in refs for other, refs in remaining.items() if other != t))
        if not ready:
            raise RuntimeError(f"circular foreign keys between {sorted(remaining)}")
        for table in ready:
            ordered.append(PatientRows(table, predicates[table], tuple(sorted(remaining.pop(table)))))
    return ordered


def _parameters(patient_id: str, device_ids: list[str]) -> dict:
    return {"patient_id": patient_id, "device_ids": device_ids, "quoted_patient_id": json.dumps(patient_id)}


def patient_devices(connection: psycopg.Connection, patient_id: str) -> list[str]:
    """The patient's devices, current or past (the registry and the readings loaded)."""
    return [row[0] for row in connection.execute(
        "SELECT device_id FROM kidjamo.devices WHERE patient_id = %(p)s"
        " UNION SELECT device_id FROM kidjamo.device_status WHERE patient_id = %(p)s ORDER BY 1", {"p": patient_id})]


# --- the lake ----------------------------------------------------------------------------------
RECORD_LAYERS = ("landing", "raw")  # JSON files as producers sent them
PARQUET_LAYERS = ("bronze", "quarantine", "gates", "silver", "gold")  # gates: the staged silver candidates
ERASED_RECORD = b'{"erased":true}'


def _record_matches(record: bytes, patient_id: str, device_ids: set[str]) -> bool:
    try:
        document = json.loads(record)
    except ValueError:
        return json.dumps(patient_id).encode() in record
    if not isinstance(document, dict):
        return json.dumps(patient_id).encode() in record
    return document.get("patient_id") == patient_id or document.get("device_id") in device_ids


def _parquet_mask(table: pa.Table, patient_id: str, device_ids: list[str]) -> pa.ChunkedArray | None:
    names = set(table.column_names)
    if "patient_id" in names:
        mask = pc.equal(table["patient_id"], patient_id)
    elif "device_id" in names:
        mask = pc.is_in(table["device_id"], pa.array(device_ids, pa.string()))
        if "original_text" in names:
            mask = pc.or_(mask, pc.match_substring(table["original_text"], json.dumps(patient_id)))
    else:
        return None
    return pc.fill_null(mask, False)


def _lake_record_files(lake: Lake) -> list[str]:
    return [f.path for layer in RECORD_LAYERS for f in lake.list_files(layer) if is_landing_file(posixpath.basename(f.path))]


def _lake_parquet_files(lake: Lake) -> list[str]:
    return [f.path for layer in PARQUET_LAYERS for f in lake.list_files(layer) if f.path.endswith(".parquet")]


# --- right of access -----------------------------------------------------------------------------
def export_patient(patient_id: str, *, database_url: str, lake: Lake, destination: Path, actor: str | None = None) -> dict:
    """Write everything held on a patient under ``destination``: database rows and lake records.

    ``database/<table>.csv`` per table (and the audit trail), ``lake/<layer>/.../<file>.parquet``
    with the patient's rows of each kind of Parquet file, ``lake/<layer>/records.ndjson`` with the
    patient's original records from landing and raw (file and position), and ``manifest.json``.
    Returns the counts written to ``manifest.json``. The export is recorded in the audit log.
    """
    destination = Path(destination)
    (destination / "database").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with connect(database_url, application_name="kidjamo-export") as connection:
        set_actor(connection, actor)
        if connection.execute("SELECT 1 FROM kidjamo.patients WHERE patient_id = %s", (patient_id,)).fetchone() is None:
            raise LookupError(f"patient {patient_id!r} is not in kidjamo.patients")
        device_ids = patient_devices(connection, patient_id)
        parameters = _parameters(patient_id, device_ids)
        selections = [(rows.table, rows.predicate) for rows in patient_row_plan(connection)]
        selections += [("kidjamo.pseudonyms", "(subject = 'patient' AND identifier = %(patient_id)s)"
                        " OR (subject = 'device' AND identifier = ANY(%(device_ids)s))"),
                       ("kidjamo.audit_log", "patient_id = %(patient_id)s")]
        with connection.cursor() as cursor:
            for table, predicate in selections:
                query = psycopg.ClientCursor(connection).mogrify(f"SELECT * FROM {table} WHERE {predicate}", parameters)
                path = destination / "database" / f"{table.split('.', 1)[1]}.csv"
                with path.open("wb") as handle, cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER true)") as copy:
                    for chunk in copy:
                        handle.write(chunk)
                counts[f"database/{path.name}"] = connection.execute(f"SELECT count(*) FROM {table} WHERE {predicate}", parameters).fetchone()[0]

        device_set = set(device_ids)
        for layer in RECORD_LAYERS:
            lines = []
            for path in (p for p in _lake_record_files(lake) if p.startswith(f"{layer}/")):
                for index, record in enumerate(split_records(lake.read_bytes(path), path)):
                    if _record_matches(record, patient_id, device_set):
                        lines.append(json.dumps({"file": path, "record_index": index, "record": record.decode("utf-8", "replace")}))
            if lines:
                target = destination / "lake" / layer / "records.ndjson"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("\n".join(lines) + "\n")
                counts[f"lake/{layer}/records.ndjson"] = len(lines)

        groups: dict[str, list[pa.Table]] = {}
        for path in _lake_parquet_files(lake):
            table = lake.read_parquet([path])
            mask = _parquet_mask(table, patient_id, device_ids)
            if mask is not None and pc.any(mask).as_py():
                parts = path.split("/")
                groups.setdefault(f"{parts[0]}/{parts[1]}/{parts[-1]}", []).append(table.filter(mask))
        for group, tables in sorted(groups.items()):
            target = destination / "lake" / group
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(tables, promote_options="default"), target)
            counts[f"lake/{group}"] = sum(t.num_rows for t in tables)

        manifest = {"patient_id": patient_id, "devices": device_ids, "lake": lake.root_url, "files": counts}
        (destination / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        record_audit_event(connection, "patient_export", {"destination": str(destination), "files": len(counts)}, patient_id)
    return manifest


# --- right of erasure ----------------------------------------------------------------------------
def _erase_from_lake(lake: Lake, patient_id: str, device_ids: list[str], locks: PartitionLocks) -> dict:
    """Rewrite every lake file holding the patient's data without it; return what changed.

    Each raw manifest is updated under its partition's lock, so a run copying landing files into the
    same partition meanwhile keeps its entries (kidjamo.warehouse.locks).
    """
    device_set = set(device_ids)
    result = {"record_files_rewritten": 0, "records_erased": 0, "parquet_files_rewritten": 0, "parquet_rows_erased": 0}
    manifests: dict[str, dict] = {}
    for path in _lake_record_files(lake):
        data = lake.read_bytes(path)
        records = split_records(data, path)
        matches = [_record_matches(record, patient_id, device_set) for record in records]
        if not any(matches):
            continue
        # The record keeps its position (a tombstone), so that (raw_file, record_index) lineage of
        # the other records in the file stays true, and so do the manifest's record counts.
        kept = [ERASED_RECORD if match else record for record, match in zip(records, matches)]
        text = decompress(data, path).lstrip()
        if len(records) == 1 and text[:1] == b"{" and not path.endswith((".ndjson", ".ndjson.gz")):
            body = kept[0]
        elif text[:1] == b"[":
            body = b"[" + b",\n".join(kept) + b"]"
        else:
            body = b"\n".join(kept) + b"\n"
        new_data = gzip.compress(body, mtime=0) if path.endswith(".gz") else body
        lake.write_bytes(path, new_data)
        result["record_files_rewritten"] += 1
        result["records_erased"] += sum(matches)
        if path.startswith("raw/"):
            manifests.setdefault(posixpath.dirname(path), {})[posixpath.basename(path)] = {
                "size": len(new_data), "sha256": hashlib.sha256(new_data).hexdigest()}
    for directory, changed in manifests.items():
        manifest_path = f"{directory}/_manifest.json"
        with locks.hold(directory):
            if not lake.exists(manifest_path):
                continue
            document = json.loads(lake.read_bytes(manifest_path))
            for entry in document.get("files", []):
                if entry.get("name") in changed:
                    entry.update(changed[entry["name"]], erased_records=True)
            lake.write_bytes(manifest_path, json.dumps(document, indent=1).encode())
    for path in _lake_parquet_files(lake):
        table = lake.read_parquet([path])
        mask = _parquet_mask(table, patient_id, device_ids)
        if mask is None or not pc.any(mask).as_py():
            continue
        lake.write_parquet(path, table.filter(pc.invert(mask)))
        result["parquet_files_rewritten"] += 1
        result["parquet_rows_erased"] += pc.sum(pc.cast(mask, pa.int64())).as_py()
    return result


def erase_patient(patient_id: str, *, database_url: str, lake: Lake, pseudonym_key: str, actor: str | None = None) -> dict:
    """Remove everything held on a patient: the lake files first, then the database in one transaction.

    Lake: landing and raw records become ``{"erased":true}`` tombstones (positions kept, manifest
    checksums updated); bronze, quarantine, silver and gold Parquet files are rewritten without the
    patient's rows. Database: every row of the patient (see :func:`patient_row_plan`), their
    pseudonyms, and the before/after images of their audit rows; then a ``patient_erasure`` audit
    event records what was removed, and every analytics view is refreshed without the patient.
    Safe to run again (a second run finds nothing). Returns counts.
    """
    with connect(database_url, application_name="kidjamo-erase") as connection:
        device_ids = patient_devices(connection, patient_id)
    with PartitionLocks(database_url) as locks:
        lake_counts = _erase_from_lake(lake, patient_id, device_ids, locks)
    deleted: dict[str, int] = {}
    with connect(database_url, application_name="kidjamo-erase") as connection:
        set_actor(connection, actor)
        device_ids = sorted(set(device_ids) | set(patient_devices(connection, patient_id)))
        parameters = _parameters(patient_id, device_ids)
        for rows in patient_row_plan(connection):
            count = connection.execute(f"DELETE FROM {rows.table} WHERE {rows.predicate}", parameters).rowcount
            if count:
                deleted[rows.table] = count
        deleted["kidjamo.pseudonyms"] = connection.execute(
            "DELETE FROM kidjamo.pseudonyms WHERE (subject = 'patient' AND identifier = %(patient_id)s)"
            " OR (subject = 'device' AND identifier = ANY(%(device_ids)s))", parameters).rowcount
        redacted = connection.execute("SELECT kidjamo.redact_patient_audit(%s)", (patient_id,)).fetchone()[0]
        summary = {"devices": device_ids, "database_rows_deleted": deleted, "audit_rows_redacted": redacted, "lake": lake_counts}
        record_audit_event(connection, "patient_erasure", summary, patient_id)
    summary["views_refreshed"] = sorted(refresh_views(database_url, heavy=True, pseudonym_key=pseudonym_key)["views"])
    return summary
