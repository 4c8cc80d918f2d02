"""Housekeeping that keeps the lake, the warehouse and Airflow's metadata small and fast.

Run by ``dags/kidjamo_maintenance.py``, and callable without Airflow (tests, a shell):

- :func:`compact_closed_days` merges the many per-minute Parquet files of a closed day of the
  bronze, quarantine, gates, silver and gold layers into one file per day and file name, with the
  same rows. Raw is the byte-exact replay source and is never compacted.
- :func:`lake_sizes` and :func:`database_sizes` report what the lake and the warehouse hold.
- :func:`clean_airflow_metadata` runs ``airflow db clean``: a minute schedule adds 1,440 DAG runs
  (and their task instances, XComs and logs rows) a day to Airflow's own database.
- :func:`partition_window` names the measurement partitions to create ahead, so that tomorrow's
  exist before its first reading arrives.

Compacted layout: a closed day ``{layer}/vitals/dt=YYYY-MM-DD/`` holds one file
``compacted-<name>`` per minute file name (``compacted-part-0.parquet``, rows in arrival order)
instead of ``hh=/mm=`` minute folders.
A minute re-processed after compaction writes its minute file again; the next compaction
replaces that minute's rows in the day file with the minute file's, so a day never counts a
row twice once compacted again, and compacting twice changes nothing.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kidjamo.warehouse.database import connect
from kidjamo.lake.storage import Lake

#: Layers whose closed days are compacted; raw (the byte-exact replay source) and landing never are.
COMPACTED_LAYERS = ("bronze", "quarantine", "gates", "silver", "gold")
#: What the lake holds, by prefix: the layers, and the gates' full validation results (Data Docs).
LAKE_PREFIXES = {
    **{layer: f"{layer}/vitals" for layer in ("landing", "raw", "bronze", "quarantine", "gates", "silver", "gold")},
    "quality": "quality/validations",
}
COMPACTED_PREFIX = "compacted-"
ROW_GROUP_ROWS = 128 * 1024
DATASET = "vitals"


def closed_days(as_of: datetime, *, lookback_days: int, grace: timedelta = timedelta(hours=1)) -> list[date]:
    """The last ``lookback_days`` UTC days that ended at least ``grace`` before ``as_of``, oldest first.

    The grace leaves time for the last minute runs of a day (and their retries) to finish.
    """
    last_closed = (as_of.astimezone(timezone.utc) - grace).date() - timedelta(days=1)
    return [last_closed - timedelta(days=offset) for offset in range(lookback_days - 1, -1, -1)]


def compact_day(lake: Lake, layer: str, day: date) -> dict:
    """Merge the minute Parquet files of one day of a layer: one ``dt=…/compacted-<name>`` per file name.

    A minute partition may hold several files of different content (gold's ``part-0.parquet`` and
    ``alert_candidates.parquet``, quarantine's ``bronze.parquet`` and ``silver.parquet``): each
    name is compacted on its own, so a day keeps them apart. Returns ``{"files_before",
    "files_after", "rows"}``; a day already compacted is left untouched.
    """
    if layer not in COMPACTED_LAYERS:
        raise ValueError(f"layer {layer!r} is never compacted (compacted layers: {', '.join(COMPACTED_LAYERS)})")
    day_prefix = f"{layer}/{DATASET}/dt={day:%Y-%m-%d}"
    by_name: dict[str, list[str]] = {}
    for lake_file in lake.list_files(day_prefix):
        name = posixpath.basename(lake_file.path)
        if not name.endswith(".parquet"):
            continue
        if posixpath.dirname(lake_file.path) == day_prefix:
            name = name.removeprefix(COMPACTED_PREFIX)
        by_name.setdefault(name, []).append(lake_file.path)
    totals = {"files_before": 0, "files_after": 0, "rows": 0}
    for name, paths in sorted(by_name.items()):
        result = _compact_name(lake, day_prefix, name, paths)
        for key in totals:
            totals[key] += result[key]
    return totals


def _compact_name(lake: Lake, day_prefix: str, name: str, paths: list[str]) -> dict:
    """Merge the minute files called ``name`` of one day into ``dt=…/compacted-<name>``.

    Minute files are streamed in arrival order, so memory holds one minute and the compressed
    day file, not the whole day decoded. The day file is written (atomically) and its row count
    checked before any minute file is deleted: a crash at any point loses no row, and the next
    run finishes the job.
    """
    compacted_path = f"{day_prefix}/{COMPACTED_PREFIX}{name}"
    minute_files = [path for path in paths if path != compacted_path]  # sorted: hh=/mm= order
    has_compacted = compacted_path in paths
    if not minute_files:
        rows = _parquet_rows(lake, compacted_path) if has_compacted else 0
        return {"files_before": len(paths), "files_after": len(paths), "rows": rows}

    # The newest file's column order wins; a column only older files have is kept at the end.
    newest_first = list(reversed(minute_files)) + ([compacted_path] if has_compacted else [])
    schema = pa.unify_schemas([_parquet_schema(lake, path) for path in newest_first], promote_options="permissive")
    if has_compacted:
        chunks = [_merge_with_previous(lake, compacted_path, minute_files, schema)]
    else:
        chunks = (_conform(lake.read_parquet([path]), schema) for path in minute_files)
    buffer = io.BytesIO()
    rows = 0
    with pq.ParquetWriter(buffer, schema, compression="zstd") as writer:
        pending: list[pa.Table] = []
        pending_rows = 0
        for chunk in chunks:
            pending.append(chunk)
            pending_rows += chunk.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                rows += pending_rows
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
            rows += pending_rows
    lake.write_bytes(compacted_path, buffer.getvalue())

    written_rows = _parquet_rows(lake, compacted_path)
    if written_rows != rows:
        raise RuntimeError(f"{lake.uri(compacted_path)}: holds {written_rows} rows, expected {rows}; minute files kept")
    for path in minute_files:
        lake.delete(path)
    return {"files_before": len(paths), "files_after": 1, "rows": rows}


def _merge_with_previous(lake: Lake, compacted_path: str, minute_files: list[str], schema: pa.Schema) -> pa.Table:
    """The day's rows when minutes were re-processed after a compaction: their new rows replace the old."""
    minute_rows = pa.concat_tables([_conform(lake.read_parquet([path]), schema) for path in minute_files])
    previous = _conform(lake.read_parquet([compacted_path]), schema)
    replaced = pc.is_in(previous.column("arrival_minute"), value_set=pc.unique(minute_rows.column("arrival_minute")))
    merged = pa.concat_tables([previous.filter(pc.invert(replaced)), minute_rows])
    return merged.sort_by([("arrival_minute", "ascending")])


def compact_closed_days(lake: Lake, as_of: datetime, *, lookback_days: int = 3,
                        grace: timedelta = timedelta(hours=1), layers: tuple[str, ...] = COMPACTED_LAYERS) -> dict:
    """Compact every closed day of the last ``lookback_days`` in each layer; return per-layer counts.

    Looking back several days catches up after a missed maintenance run; days already compacted
    cost one listing each.
    """
    summary = {}
    for layer in layers:
        totals = {"days_compacted": 0, "files_before": 0, "files_after": 0, "rows": 0}
        for day in closed_days(as_of, lookback_days=lookback_days, grace=grace):
            result = compact_day(lake, layer, day)
            if result["files_before"] != result["files_after"]:
                totals["days_compacted"] += 1
            for key in ("files_before", "files_after", "rows"):
                totals[key] += result[key]
        summary[layer] = totals
    return summary


def lake_sizes(lake: Lake, prefixes: dict[str, str] = LAKE_PREFIXES) -> dict:
    """Files and bytes per lake layer: ``{layer: {"files": n, "bytes": n}}``."""
    sizes = {}
    for layer, prefix in prefixes.items():
        files = lake.list_files(prefix)
        sizes[layer] = {"files": len(files), "bytes": sum(f.size for f in files)}
    return sizes


def database_sizes(database_url: str, schemas: tuple[str, ...] = ("kidjamo", "analytics")) -> dict:
    """The database's size and each table's or materialized view's (partitions summed into their parent).

    Returns ``{"database_bytes": n, "relations": {"kidjamo.measurements": n, …}}``, largest first.
    """
    query = """
        SELECT n.nspname || '.' || c.relname,
               (SELECT coalesce(sum(pg_total_relation_size(tree.relid)), 0) FROM pg_partition_tree(c.oid) AS tree)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
        ORDER BY 2 DESC, 1
    """
    with connect(database_url, autocommit=True, application_name="kidjamo-maintenance") as connection:
        database_bytes = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        relations = {name: int(size) for name, size in connection.execute(query, (list(schemas),))}
    return {"database_bytes": int(database_bytes), "relations": relations}


def airflow_db_clean_command(clean_before: datetime, *, tables: tuple[str, ...] = (), dry_run: bool = False) -> list[str]:
    """The ``airflow db clean`` command line that purges metadata older than ``clean_before``.

    ``--skip-archive`` drops the rows instead of copying them to ``_airflow_deleted__*`` tables,
    which would otherwise grow as fast as the tables being cleaned.
    """
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or shutil.which("airflow") or "airflow"
    command = [airflow, "db", "clean", "--clean-before-timestamp", clean_before.astimezone(timezone.utc).isoformat(),
               "--skip-archive", "--yes"]
    if tables:
        command += ["--tables", ",".join(tables)]
    if dry_run:
        command.append("--dry-run")
    return command


def clean_airflow_metadata(as_of: datetime, keep_days: int, *, tables: tuple[str, ...] = (), dry_run: bool = False,
                           environment: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run ``airflow db clean`` for metadata older than ``keep_days`` before ``as_of``.

    Airflow keeps the latest run of each DAG whatever its age. ``environment`` (default: this
    process's) must point at the Airflow metadata database, as every Airflow component's does.
    Raises ``RuntimeError`` with Airflow's own output when the command fails.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be >= 1, got {keep_days}")
    clean_before = as_of - timedelta(days=keep_days)
    command = airflow_db_clean_command(clean_before, tables=tables, dry_run=dry_run)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env=environment if environment is not None else dict(os.environ))
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{result.stderr[-4000:]}")
    return {"clean_before": clean_before.isoformat(), "command": " ".join(command[1:]), "output": result.stdout[-4000:]}


def _fs_path(lake: Lake, path: str) -> str:
    return lake.uri(path).split("://", 1)[1]


def _parquet_rows(lake: Lake, path: str) -> int:
    return pq.read_metadata(_fs_path(lake, path), filesystem=lake.fs).num_rows


def _parquet_schema(lake: Lake, path: str) -> pa.Schema:
    return pq.read_schema(_fs_path(lake, path), filesystem=lake.fs)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in its order (a column an older file lacks is null)."""
    columns = [table.column(field.name).cast(field.type) if field.name in table.column_names
               else pa.nulls(table.num_rows, field.type) for field in schema]
    return pa.table(columns, schema=schema)
