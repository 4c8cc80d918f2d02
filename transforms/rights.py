"""RGPD rights of a patient: access (export everything held on them) and erasure, complete and verified.

Export is audited (``kidjamo.warehouse.audit``). Erasure (:func:`erase_patient`) runs in this order,
so that nothing comes back once it has passed:

1. **Revoke** the patient's devices (credentials revoked, devices inactive) and notify
   ``kidjamo_erasure``: every ingestion instance refuses them at once and its landing writer turns
   their readings into tombstones in its unpublished parts, in memory and in its journal.
2. **Lock out pipeline runs**: an exclusive advisory lock that every run takes shared
   (:func:`pipeline_run_guard`), so no run reads a file before its rewrite and writes it back after.
3. **Erase every prefix of the lake**, whatever it is: landing and raw records (unpublished parts
   included) become ``{"erased":true}`` tombstones in place (raw manifests get their new size and
   sha256); every Parquet file (bronze, quarantine, gates, silver, gold …) loses each row with the
   identifiers in any text column; any other file (GX validation results under
   ``quality/validations/`` …) has them replaced by ``erased``. A file that cannot be read is
   reported, never a reason to stop half-way. Local state: the journals of ingestion services on
   this host and the generated Data Docs (rebuilt by ``kidjamo quality docs``).
4. **The database**, in one transaction: every row held on the patient (tables found from the
   catalog), their pseudonyms, the identifiers in any other text column
   (``kidjamo.data_quality_results`` …) and in the audit log, whose rows stay with the
   identifiers replaced by a reference (the patient's pseudonym).
5. **Verify** by a scan that no identifier remains in any lake file, file path, local state or row
   of schemas ``kidjamo`` and ``analytics``; a file published meanwhile by a writer is erased and
   scanned again. The erasure is recorded (``patient_erasure``, without identifiers) with the
   verification's outcome, and :class:`ErasureIncomplete` is raised if anything remains.

Identifiers are the patient id and the ids of their devices, matched as whole tokens (``p-1``
does not match ``p-10``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import posixpath
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from ingestion.landing_writer import redact_journal_segment
from kidjamo.warehouse.audit import record_audit_event, set_actor
from kidjamo.warehouse.database import connect
from kidjamo.warehouse.pseudonyms import pseudonym
from kidjamo.lake.storage import Lake
from kidjamo.lake.records import decompress, is_landing_file, split_records
from transforms.fhir.export import erase_patient_from_exports
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
log = logging.getLogger(__name__)

ERASURE_LOCK_ID = 724_412  # project-wide advisory lock: erasure exclusive, pipeline runs shared
ERASURE_CHANNEL = "kidjamo_erasure"
REPLACEMENT = b"erased"
RECORD_PREFIXES = ("landing/", "raw/")
_TOKEN = "A-Za-z0-9_-"  # characters that continue an identifier


class ErasureIncomplete(RuntimeError):
    """Identifiers of the erased patient remain somewhere (``leftovers`` says where, without them)."""

    def __init__(self, leftovers: list[str]):
        super().__init__(f"erasure incomplete: identifiers remain in {len(leftovers)} place(s): {leftovers[:20]}")
        self.leftovers = leftovers


class Identifiers:
    """The identifiers of one patient and the patterns that find them as whole tokens."""

    def __init__(self, patient_id: str, device_ids: list[str]):
        self.values = sorted({patient_id, *device_ids}, key=len, reverse=True)
        alternatives = "|".join(re.escape(value) for value in self.values)
        self.bytes_pattern = re.compile(f"(?<![{_TOKEN}])(?:{alternatives})(?![{_TOKEN}])".encode())
        # PostgreSQL's regular expressions know look-behind; RE2 (Arrow) does not: a boundary group instead.
        self.sql_pattern = f"(?<![{_TOKEN}])(?:{alternatives})(?![{_TOKEN}])"
        self.re2_pattern = f"(?:^|[^{_TOKEN}])(?:{alternatives})(?:[^{_TOKEN}]|$)"

    def found_in(self, data: bytes) -> bool:
        return self.bytes_pattern.search(data) is not None


@contextmanager
def pipeline_run_guard(database_url: str) -> Iterator[None]:
    """Held by every pipeline run (shared): an erasure waits for the runs in progress and holds new ones back."""
    with connect(database_url, autocommit=True, application_name="kidjamo-run-guard") as connection:
        connection.execute("SELECT pg_advisory_lock_shared(%s)", (ERASURE_LOCK_ID,))
        yield


# --- 1. revoke ---------------------------------------------------------------------------------------
def revoke_everywhere(connection: psycopg.Connection, device_ids: list[str]) -> None:
    """Revoke the devices' credentials, deactivate them and tell every ingestion instance (committed by the caller)."""
    connection.execute("UPDATE kidjamo.device_credentials SET revoked_at = coalesce(revoked_at, now()),"
                       " previous_api_key_verifier = NULL, previous_signing_key = NULL WHERE device_id = ANY(%s)", (device_ids,))
    connection.execute("UPDATE kidjamo.devices SET active = false, updated_at = now() WHERE device_id = ANY(%s) AND active",
                       (device_ids,))
    # The payload is transient (not stored, not WAL-logged); it tells writers which readings to drop.
    connection.execute("SELECT pg_notify(%s, %s)", (ERASURE_CHANNEL, json.dumps({"devices": device_ids})))


# --- 3. the lake ---------------------------------------------------------------------------------------
def _is_record_file(path: str) -> bool:
    return path.startswith(RECORD_PREFIXES) and not posixpath.basename(path).startswith(".") \
        and path.endswith((".json", ".ndjson", ".json.gz", ".ndjson.gz"))


def _rewrite_records(data: bytes, path: str, identifiers: Identifiers) -> tuple[bytes, int] | None:
    """The file with each record naming the patient turned into a tombstone, or None if none does."""
    records = split_records(data, path)
    matches = [identifiers.found_in(record) for record in records]
    if not any(matches):
        return None
    kept = [ERASED_RECORD if match else record for record, match in zip(records, matches)]
    text = decompress(data, path).lstrip()
    if len(records) == 1 and text[:1] == b"{" and not path.endswith((".ndjson", ".ndjson.gz")):
        body = kept[0]
    elif text[:1] == b"[":
        body = b"[" + b",\n".join(kept) + b"]"
    else:
        body = b"\n".join(kept) + b"\n"
    return (gzip.compress(body, mtime=0) if path.endswith(".gz") else body), sum(matches)


def _identifier_mask(table: pa.Table, identifiers: Identifiers) -> pa.ChunkedArray | None:
    mask = None
    for name in table.column_names:
        column = table[name]
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        found = pc.fill_null(pc.match_substring_regex(column, identifiers.re2_pattern), False)
        mask = found if mask is None else pc.or_(mask, found)
    return mask


def _redact_text(data: bytes, path: str, identifiers: Identifiers) -> bytes | None:
    text = decompress(data, path)
    redacted = identifiers.bytes_pattern.sub(REPLACEMENT, text)
    if redacted == text:
        return None
    return gzip.compress(redacted, mtime=0) if path.endswith(".gz") else redacted


def erase_from_lake(lake: Lake, identifiers: Identifiers) -> dict:
    """One pass over every file of the lake; never stops on a file it cannot read (it is reported)."""
    counts = {"record_files_rewritten": 0, "records_erased": 0, "parquet_files_rewritten": 0, "parquet_rows_erased": 0,
              "other_files_redacted": 0, "unreadable_files": []}
    manifests: dict[str, dict] = {}
    for lake_file in lake.list_files(""):
        path = lake_file.path
        try:
            data = lake.read_bytes(path)
            if path.endswith(".parquet"):
                table = pq.read_table(pa.BufferReader(data))
                mask = _identifier_mask(table, identifiers)
                if mask is None or not pc.any(mask).as_py():
                    continue
                lake.write_parquet(path, table.filter(pc.invert(mask)))
                counts["parquet_files_rewritten"] += 1
                counts["parquet_rows_erased"] += pc.sum(pc.cast(mask, pa.int64())).as_py()
                continue
            if _is_record_file(path):
                rewritten = _rewrite_records(data, path, identifiers)
                if rewritten is None:
                    continue
                new_data, erased = rewritten
                lake.write_bytes(path, new_data)
                counts["record_files_rewritten"] += 1
                counts["records_erased"] += erased
                if path.startswith("raw/"):
                    manifests.setdefault(posixpath.dirname(path), {})[posixpath.basename(path)] = {
                        "size": len(new_data), "sha256": hashlib.sha256(new_data).hexdigest()}
                continue
            redacted = _redact_text(data, path, identifiers)
            if redacted is not None:
                lake.write_bytes(path, redacted)
                counts["other_files_redacted"] += 1
        except Exception as error:  # one bad file must not leave the rest of the lake unerased
            log.error("erasure: %s could not be processed: %s", path, type(error).__name__)
            counts["unreadable_files"].append(path)
    for directory, changed in manifests.items():
        manifest_path = f"{directory}/_manifest.json"
        if not lake.exists(manifest_path):
            continue
        document = json.loads(lake.read_bytes(manifest_path))
        for entry in document.get("files", []):
            if entry.get("name") in changed:
                entry.update(changed[entry["name"]], erased_records=True)
        lake.write_bytes(manifest_path, json.dumps(document, indent=1).encode())
    return counts


def lake_leftovers(lake: Lake, identifiers: Identifiers) -> list[str]:
    """Every lake path still holding an identifier (in its name or content), or that cannot be read."""
    leftovers = []
    for lake_file in lake.list_files(""):
        path = lake_file.path
        if identifiers.found_in(path.encode()):
            leftovers.append(f"lake path {path}")
            continue
        try:
            data = lake.read_bytes(path)
            if path.endswith(".parquet"):
                mask = _identifier_mask(pq.read_table(pa.BufferReader(data)), identifiers)
                found = mask is not None and pc.any(mask).as_py()
            else:
                found = identifiers.found_in(decompress(data, path))
        except Exception as error:
            leftovers.append(f"lake {path} (unreadable: {type(error).__name__})")
            continue
        if found:
            leftovers.append(f"lake {path}")
    return leftovers


# --- local state: ingestion journals, Data Docs -----------------------------------------------------------
def erase_local_state(identifiers: Identifiers, device_ids: list[str], *, journal_dirs: list[Path], data_docs_dirs: list[Path]) -> dict:
    """Drop the devices' idempotency keys from ingestion journals on this host; delete generated Data Docs naming them."""
    counts = {"journal_segments_redacted": 0, "data_docs_removed": []}
    for directory in journal_dirs:
        for segment in sorted(Path(directory).glob("journal-*.log")):
            if identifiers.found_in(segment.read_bytes()):
                redact_journal_segment(segment, set(device_ids))
                counts["journal_segments_redacted"] += 1
    for directory in data_docs_dirs:
        directory = Path(directory)
        if directory.exists() and any(identifiers.found_in(path.read_bytes()) for path in directory.rglob("*") if path.is_file()):
            shutil.rmtree(directory)  # generated: `kidjamo quality docs` rebuilds it from the erased lake
            counts["data_docs_removed"].append(str(directory))
    return counts


def local_leftovers(identifiers: Identifiers, directories: list[Path]) -> list[str]:
    return [f"local {path}" for directory in directories if Path(directory).exists()
            for path in Path(directory).rglob("*") if path.is_file() and identifiers.found_in(path.read_bytes())]


# --- 4. the database ------------------------------------------------------------------------------------
def _text_columns(connection: psycopg.Connection, schemas: tuple[str, ...], kinds: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """{relation: [(column, type)]} of the text, json and jsonb columns."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for relation, column, kind in connection.execute(
        """
        SELECT c.oid::regclass::text, a.attname, format_type(a.atttypid, NULL) FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = ANY(%s) AND c.relkind = ANY(%s) AND NOT c.relispartition
          AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'json'::regtype, 'jsonb'::regtype, 'name'::regtype)
        ORDER BY 1, 2
        """, (list(schemas), list(kinds))):
        columns.setdefault(relation, []).append((column, kind))
    return columns


def erase_from_database(connection: psycopg.Connection, patient_id: str, device_ids: list[str], identifiers: Identifiers,
                        reference: str) -> dict:
    """Delete the patient's rows, their pseudonyms, and replace their identifiers anywhere else (one transaction)."""
    parameters = _parameters(patient_id, device_ids)
    deleted: dict[str, int] = {}
    for rows in patient_row_plan(connection):
        count = connection.execute(f"DELETE FROM {rows.table} WHERE {rows.predicate}", parameters).rowcount
        if count:
            deleted[rows.table] = count
    deleted["kidjamo.pseudonyms"] = connection.execute(
        "DELETE FROM kidjamo.pseudonyms WHERE (subject = 'patient' AND identifier = %(patient_id)s)"
        " OR (subject = 'device' AND identifier = ANY(%(device_ids)s))", parameters).rowcount
    redacted: dict[str, int] = {}
    for table, columns in _text_columns(connection, ("kidjamo",), ("r", "p")).items():
        # The audit log has its own function; measurements hold no text naming another patient's
        # identifiers (the verification scan still reads them).
        if table in ("kidjamo.audit_log", "kidjamo.measurements"):
            continue
        for column, kind in columns:
            cast = {"jsonb": "::jsonb", "json": "::json"}.get(kind, "")
            count = connection.execute(sql.SQL(
                "UPDATE {table} SET {column} = regexp_replace({column}::text, %(pattern)s, %(replacement)s, 'g')" + cast +
                " WHERE {column}::text ~ %(pattern)s").format(table=sql.SQL(table), column=sql.Identifier(column)),
                {"pattern": identifiers.sql_pattern, "replacement": REPLACEMENT.decode()}).rowcount
            if count:
                redacted[f"{table}.{column}"] = count
    audit = connection.execute("SELECT kidjamo.erase_identifiers_from_audit(%s, %s)", (identifiers.sql_pattern, reference)).fetchone()[0]
    return {"database_rows_deleted": deleted, "database_values_redacted": redacted, "audit_rows_redacted": audit}


def database_leftovers(connection: psycopg.Connection, identifiers: Identifiers) -> list[str]:
    """Every relation of schemas kidjamo and analytics with a row naming an identifier (whole-row text scan)."""
    leftovers = []
    for (relation,) in connection.execute(
        "SELECT c.oid::regclass::text FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('kidjamo', 'analytics') AND c.relkind IN ('r', 'p', 'm', 'v') AND NOT c.relispartition ORDER BY 1"):
        found = connection.execute(sql.SQL("SELECT count(*) FROM {} AS t WHERE t::text ~ %s").format(sql.SQL(relation)),
                                   (identifiers.sql_pattern,)).fetchone()[0]
        if found:
            leftovers.append(f"database {relation} ({found} rows)")
    return leftovers


# --- the whole erasure ---------------------------------------------------------------------------------
def erase_patient(patient_id: str, *, database_url: str, lake: Lake, pseudonym_key: str, actor: str | None = None,
                  journal_dirs: list[Path] = (), data_docs_dirs: list[Path] = (), writer_grace_s: float = 2.0,
                  passes: int = 3) -> dict:
    """Erase everything held on ``patient_id`` (see the module's docstring); return counts, raise if anything remains.

    ``journal_dirs``: landing-writer journals on this host (``$KIDJAMO_HOME/ingest/journal``);
    ``data_docs_dirs``: generated Data Docs sites. ``writer_grace_s``: how long readings accepted
    just before the revocation may take to reach the lake (the writers' flush interval is 25 ms).
    Safe to run again.
    """
    with connect(database_url, application_name="kidjamo-erase") as connection:
        device_ids = patient_devices(connection, patient_id)
        revoke_everywhere(connection, device_ids)
    identifiers = Identifiers(patient_id, device_ids)
    reference = "erased:" + pseudonym("patient", patient_id, pseudonym_key)
    summary: dict = {"devices": device_ids, "reference": reference}
    with connect(database_url, autocommit=True, application_name="kidjamo-erase-lock") as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (ERASURE_LOCK_ID,))  # waits for the runs in progress
        time.sleep(writer_grace_s)
        summary["local"] = erase_local_state(identifiers, device_ids, journal_dirs=list(journal_dirs),
                                             data_docs_dirs=list(data_docs_dirs))
        # FHIR exports first: whole resources leave the NDJSON and its manifest counts stay true.
        summary["lake"] = erase_patient_from_exports(lake, patient_id) | erase_from_lake(lake, identifiers)
        with connect(database_url, application_name="kidjamo-erase") as connection:
            set_actor(connection, actor)
            summary.update(erase_from_database(connection, patient_id, device_ids, identifiers, reference))
        summary["views_refreshed"] = sorted(refresh_views(database_url, heavy=True, pseudonym_key=pseudonym_key)["views"])
        leftovers = _leftovers(lake, identifiers, database_url, [*journal_dirs, *data_docs_dirs])
        for _ in range(passes - 1):
            if not any(item.startswith("lake") for item in leftovers):
                break
            # A writer published a minute it held in memory meanwhile: erase again, then look again.
            time.sleep(writer_grace_s)
            erase_from_lake(lake, identifiers)
            leftovers = _leftovers(lake, identifiers, database_url, [*journal_dirs, *data_docs_dirs])
    summary["verified"] = not leftovers
    summary["leftovers"] = leftovers
    recorded = {key: value for key, value in summary.items() if key != "devices"}
    recorded["devices_erased"] = len(device_ids)
    with connect(database_url, application_name="kidjamo-erase") as connection:
        set_actor(connection, actor)
        # The event names the reference only; identifiers that slipped into counts are replaced too.
        detail = identifiers.bytes_pattern.sub(REPLACEMENT, json.dumps(recorded, default=str).encode()).decode()
        record_audit_event(connection, "patient_erasure", json.loads(detail), reference)
    if leftovers:
        raise ErasureIncomplete(leftovers)
    return summary


def _leftovers(lake: Lake, identifiers: Identifiers, database_url: str, directories: list[Path]) -> list[str]:
    with connect(database_url, application_name="kidjamo-erase-verify") as connection:
        found = database_leftovers(connection, identifiers)
    return lake_leftovers(lake, identifiers) + found + local_leftovers(identifiers, directories)
