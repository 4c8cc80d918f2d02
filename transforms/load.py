"""Silver and quarantine rows into PostgreSQL, the analytics refresh, partitions and retention.

A load is one transaction: the batch is COPYed (CSV written by Arrow, no per-row Python) into a
temporary staging table, then inserted into its table with ``ON CONFLICT DO NOTHING`` on the natural
key, so a re-load changes nothing and a failure anywhere leaves nothing behind. The same transaction
creates the daily partitions the batch needs (a reading far in the past or future never fails) and
keeps the incremental rollups behind the analytics views: the (patient, hour) rows of
``kidjamo.vitals_hourly_rollup`` the batch touched, and ``kidjamo.device_status``. Loads run as the
role ``kidjamo_pipeline`` (``SET LOCAL ROLE``), never with the connecting superuser's rights.
"""

from __future__ import annotations

import io
import time
from datetime import date, timedelta

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kidjamo import privacy
from kidjamo.database import connect
from kidjamo.settings import get_settings
from transforms.schema import QUARANTINE, SILVER

PIPELINE_ROLE = "kidjamo_pipeline"
#: Silver columns stored in kidjamo.measurements (ingested_at is replaced by run_id and loaded_at).
MEASUREMENT_COLUMNS = [name for name in SILVER.names if name != "ingested_at"] + ["run_id"]
QUARANTINE_COLUMNS = list(QUARANTINE.names)
#: Refreshed every minute: bounded by days x reasons. (analytics.device_health is a live view over
#: kidjamo.device_status, which every load keeps: nothing to refresh.)
LIGHT_VIEWS = ("data_quality_daily",)
#: Refreshed on the maintenance schedule: they grow with patients x hours or days of history.
HEAVY_VIEWS = ("vitals_hourly", "patient_daily")


def _naive_utc(table: pa.Table) -> pa.Table:
    """Time-zone-aware timestamp columns as naive UTC: Arrow writes those to CSV ~5x faster."""
    columns = [column.cast(pa.timestamp(column.type.unit)) if pa.types.is_timestamp(column.type) and column.type.tz
               else column for column in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def copy_csv(connection: psycopg.Connection, table_name: str, table: pa.Table) -> None:
    """COPY an Arrow table into ``table_name`` (same column names) as CSV written by Arrow.

    Timestamps travel as naive UTC text, read with the session time zone set to UTC for the COPY
    only (the transaction's own setting is restored after it).
    """
    buffer = io.BytesIO()
    # combine_chunks: pyarrow 26's CSV writer writes NUL bytes for strings that follow an empty chunk.
    pacsv.write_csv(_naive_utc(table.combine_chunks()), buffer, pacsv.WriteOptions(include_header=False))
    columns = ", ".join(table.column_names)
    local = not connection.autocommit  # SET LOCAL would end with the statement in autocommit mode
    previous = connection.execute("SELECT current_setting('TimeZone'), set_config('TimeZone', 'UTC', %s)", (local,)).fetchone()[0]
    with connection.cursor() as cursor, cursor.copy(f"COPY {table_name} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())
    connection.execute("SELECT set_config('TimeZone', %s, %s)", (previous, local))



def _utc_days(timestamps: pa.ChunkedArray) -> list[date]:
    days = pc.unique(pc.cast(pc.floor_temporal(timestamps, unit="day"), pa.timestamp("us", tz="UTC")))
    return sorted({value.date() for value in days.to_pylist() if value is not None})


def load_measurements(database_url: str, silver: pa.Table, run_id: str, *, defer_rollup: bool = False) -> dict:
    """Load a SILVER table into ``kidjamo.measurements`` (idempotent, one transaction).

    The hourly rollup rows the batch touched are recomputed in the same transaction, or, with
    ``defer_rollup=True``, only marked in ``kidjamo.vitals_hourly_pending`` for
    :func:`flush_hourly_rollup` (run by ``refresh_views(heavy=True)``, before the views that read
    the rollup): recomputing every minute the whole hour so far reads up to 120 readings per
    patient, a cost that grows through each hour.

    Returns ``{"staged", "inserted", "already_present", "partitions_created", "hours_recomputed",
    "hours_deferred"}``.
    """
    empty = {"staged": 0, "inserted": 0, "already_present": 0, "partitions_created": 0, "hours_recomputed": 0,
             "hours_deferred": 0}
    if silver.num_rows == 0:
        return empty
    batch = silver.select([name for name in MEASUREMENT_COLUMNS if name != "run_id"])
    # In primary-key order, the index insertions walk the b-trees page by page instead of at
    # random (~40 % less server CPU for a 200,000-row minute, bench/pipeline_minute.py).
    batch = batch.sort_by([("device_id", "ascending"), ("measured_at", "ascending")])
    batch = batch.append_column("run_id", pa.array([run_id] * batch.num_rows, pa.string()))
    with connect(database_url, application_name="kidjamo-load") as connection:
        # The staging table of a large minute does not fit PostgreSQL's default 8 MB of temporary
        # buffers (set before the session's first temporary table, or it has no effect).
        connection.execute("SET temp_buffers = '256MB'")
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        connection.execute("SET LOCAL work_mem = '64MB'")  # the hourly medians sort in memory
        if defer_rollup:  # held until commit: a concurrent flush waits for these readings (sql/0004)
            connection.execute("SELECT pg_advisory_xact_lock_shared(hashtext('kidjamo.vitals_hourly_pending'))")
        partitions_created = connection.execute(
            "SELECT kidjamo.ensure_measurement_partitions_for(%s::date[])", (_utc_days(batch["measured_at"]),)
        ).fetchone()[0]
        connection.execute(
            "CREATE TEMP TABLE measurements_staging (LIKE kidjamo.measurements INCLUDING DEFAULTS) ON COMMIT DROP;"
            "CREATE TEMP TABLE measurements_touched (patient_id text, hour timestamptz) ON COMMIT DROP"
        )
        copy_csv(connection, "measurements_staging", batch)
        columns = ", ".join(MEASUREMENT_COLUMNS)
        inserted = connection.execute(
            f"""
            WITH inserted AS (
                INSERT INTO kidjamo.measurements ({columns})
                SELECT {columns} FROM measurements_staging
                ON CONFLICT (device_id, measured_at) DO NOTHING
                RETURNING device_id, patient_id, measured_at, arrival_minute, battery_level, signal_quality,
                          low_battery, weak_signal, firmware_version
            ),
            touched AS (
                INSERT INTO measurements_touched (patient_id, hour)
                SELECT DISTINCT patient_id, date_trunc('hour', measured_at, 'UTC') FROM inserted
            ),
            device_latest AS (
                INSERT INTO kidjamo.device_status AS s (device_id, patient_id, last_measured_at, last_arrival_minute,
                    battery_level, signal_quality, low_battery, weak_signal, firmware_version)
                SELECT DISTINCT ON (device_id) device_id, patient_id, measured_at, arrival_minute,
                       battery_level, signal_quality, low_battery, weak_signal, firmware_version
                FROM inserted ORDER BY device_id, measured_at DESC
                ON CONFLICT (device_id) DO UPDATE SET
                    patient_id = excluded.patient_id, last_measured_at = excluded.last_measured_at,
                    last_arrival_minute = excluded.last_arrival_minute, battery_level = excluded.battery_level,
                    signal_quality = excluded.signal_quality, low_battery = excluded.low_battery,
                    weak_signal = excluded.weak_signal, firmware_version = excluded.firmware_version, updated_at = now()
                WHERE excluded.last_measured_at >= s.last_measured_at
            )
            SELECT count(*) FROM inserted
            """
        ).fetchone()[0]
        hours_recomputed = hours_deferred = 0
        if defer_rollup:
            hours_deferred = connection.execute(
                "INSERT INTO kidjamo.vitals_hourly_pending (patient_id, hour) SELECT patient_id, hour FROM measurements_touched"
                " ON CONFLICT DO NOTHING"
            ).rowcount
        else:
            hours_recomputed = connection.execute(
                "SELECT kidjamo.recompute_vitals_hourly(coalesce(array_agg(patient_id), '{}'), coalesce(array_agg(hour), '{}'))"
                " FROM measurements_touched"
            ).fetchone()[0]
    return {
        "staged": batch.num_rows,
        "inserted": inserted,
        "already_present": batch.num_rows - inserted,
        "partitions_created": partitions_created,
        "hours_recomputed": hours_recomputed,
        "hours_deferred": hours_deferred,
    }


def flush_hourly_rollup(database_url: str, *, pairs_per_transaction: int = 20_000) -> int:
    """Recompute the rollup rows of every pending (patient, hour) pair; return how many there were.

    Chunks of ``pairs_per_transaction`` pairs, each its own transaction, so that deferred loads
    wait at most one chunk.
    """
    total = 0
    while True:
        with connect(database_url, application_name="kidjamo-rollup") as connection:
            connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
            connection.execute("SET LOCAL work_mem = '64MB'")
            taken = connection.execute("SELECT kidjamo.recompute_pending_vitals_hourly(%s)",
                                        (pairs_per_transaction,)).fetchone()[0]
        total += taken
        if taken < pairs_per_transaction:
            return total


def load_quarantine(database_url: str, quarantine: pa.Table, run_id: str) -> dict:
    """Load a QUARANTINE table into ``kidjamo.quarantine``, idempotent on (raw_file, record_index, layer).

    ``run_id`` fills rows whose own run_id is missing. Returns ``{"staged", "inserted", "already_present"}``.
    """
    if quarantine.num_rows == 0:
        return {"staged": 0, "inserted": 0, "already_present": 0}
    batch = quarantine.select(QUARANTINE_COLUMNS)
    batch = batch.set_column(
        batch.schema.get_field_index("run_id"), "run_id", pc.fill_null(batch["run_id"], pa.scalar(run_id, pa.string()))
    )
    with connect(database_url, application_name="kidjamo-load") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        connection.execute("CREATE TEMP TABLE quarantine_staging (LIKE kidjamo.quarantine INCLUDING DEFAULTS) ON COMMIT DROP")
        copy_csv(connection, "quarantine_staging", batch)
        columns = ", ".join(QUARANTINE_COLUMNS)
        inserted = connection.execute(
            f"""
            WITH inserted AS (
                INSERT INTO kidjamo.quarantine ({columns}) SELECT {columns} FROM quarantine_staging
                ON CONFLICT (raw_file, record_index, layer) DO NOTHING
                RETURNING 1
            )
            SELECT count(*) FROM inserted
            """
        ).fetchone()[0]
    return {"staged": batch.num_rows, "inserted": inserted, "already_present": batch.num_rows - inserted}


def refresh_views(database_url: str, *, heavy: bool = False, pseudonym_key: str | None = None) -> dict:
    """Refresh the analytics materialized views CONCURRENTLY (analysts keep reading meanwhile).

    Every minute (``heavy=False``): ``data_quality_daily``, whose size does not grow with history.
    On the maintenance schedule (``heavy=True``) also ``vitals_hourly`` and ``patient_daily``, after
    the hourly rollup rows deferred loads left pending are recomputed (:func:`flush_hourly_rollup`).
    New patients and devices first get their pseudonym (``analytics.device_health``, a live view,
    needs them too). Returns
    ``{"pseudonyms_added": n, "views": {name: seconds}}`` (plus ``rollup_hours_recomputed`` when heavy).
    """
    key = pseudonym_key if pseudonym_key is not None else get_settings().pseudonym_key
    timings: dict[str, float] = {}
    flushed = flush_hourly_rollup(database_url) if heavy else 0
    with connect(database_url, application_name="kidjamo-refresh") as connection:
        connection.execute(f"SET ROLE {PIPELINE_ROLE}")
        added = privacy.ensure_pseudonyms(connection, key)
        connection.commit()
        for view in LIGHT_VIEWS + (HEAVY_VIEWS if heavy else ()):
            started = time.perf_counter()
            connection.execute("SELECT kidjamo.refresh_analytics_view(%s)", (view,))
            connection.commit()
            timings[view] = round(time.perf_counter() - started, 4)
    result = {"pseudonyms_added": added, "views": timings}
    if heavy:
        result["rollup_hours_recomputed"] = flushed
    return result


def ensure_partitions(database_url: str, first_day: date, last_day: date) -> int:
    """Create the daily partitions of ``kidjamo.measurements`` from first_day to last_day; return how many were new."""
    with connect(database_url, application_name="kidjamo-maintenance") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        return connection.execute("SELECT kidjamo.ensure_measurement_partitions(%s, %s)", (first_day, last_day)).fetchone()[0]


def apply_retention(database_url: str, keep_days: int, as_of: date) -> list[str]:
    """Drop the measurement partitions (and rollup rows) older than ``keep_days`` days before ``as_of``.

    A partition goes once all of it is older than the horizon: with keep_days=30 and as_of=2026-11-27,
    days up to 2026-10-27 inclusive are dropped. Whole partitions are dropped, never DELETEd row by
    row. Returns the dropped partitions; the retention is recorded in the audit log.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    cutoff = as_of - timedelta(days=keep_days)
    with connect(database_url, application_name="kidjamo-maintenance") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        dropped = connection.execute("SELECT kidjamo.drop_measurement_partitions_before(%s)", (cutoff,)).fetchone()[0]
        for table in ("vitals_hourly_rollup", "vitals_hourly_pending"):
            connection.execute(
                f"DELETE FROM kidjamo.{table} WHERE hour < %s::date::timestamp AT TIME ZONE 'UTC'", (cutoff,)
            )
        privacy.record_audit_event(
            connection, "retention", {"keep_days": keep_days, "as_of": as_of.isoformat(), "cutoff": cutoff.isoformat(), "dropped": dropped}
        )
    return list(dropped)
