"""Silver and quarantine rows into PostgreSQL.

A load is one transaction: the batch is COPYed (CSV written by Arrow, no per-row Python) into a
temporary staging table, then inserted into its table with ``ON CONFLICT DO NOTHING`` on the natural
key, so a re-load changes nothing and a failure anywhere leaves nothing behind. The same transaction
creates the daily partitions the batch needs (a reading far in the past or future never fails) and
keeps the incremental rollups behind the analytics views: the (patient, hour) rows of
``kidjamo.vitals_hourly_rollup`` the batch touched, and ``kidjamo.device_status``. Loads run as the
role ``kidjamo_pipeline`` (``SET LOCAL ROLE``), never with the connecting superuser's rights.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from kidjamo.warehouse.bulk import stage
from kidjamo.warehouse.database import PIPELINE_ROLE, connect
from kidjamo.lake.schema import QUARANTINE, SILVER

#: Silver columns stored in kidjamo.measurements (ingested_at is replaced by run_id and loaded_at).
MEASUREMENT_COLUMNS = [name for name in SILVER.names if name != "ingested_at"] + ["run_id"]
QUARANTINE_COLUMNS = list(QUARANTINE.names)


def _utc_days(timestamps: pa.ChunkedArray) -> list[date]:
    days = pc.unique(pc.cast(pc.floor_temporal(timestamps, unit="day"), pa.timestamp("us", tz="UTC")))
    return sorted({value.date() for value in days.to_pylist() if value is not None})


def load_measurements(database_url: str, silver: pa.Table, run_id: str, *, defer_rollup: bool = False) -> dict:
    """Load a SILVER table into ``kidjamo.measurements`` (idempotent, one transaction).

    The hourly rollup rows the batch touched are recomputed in the same transaction, or, with
    ``defer_rollup=True``, only marked in ``kidjamo.vitals_hourly_pending`` for
    :func:`transforms.views.flush_hourly_rollup` (run by ``refresh_views(heavy=True)``, before the views that read
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
        stage(connection, "measurements_staging", "LIKE kidjamo.measurements INCLUDING DEFAULTS", batch)
        connection.execute("CREATE TEMP TABLE measurements_touched (patient_id text, hour timestamptz) ON COMMIT DROP")
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
        stage(connection, "quarantine_staging", "LIKE kidjamo.quarantine INCLUDING DEFAULTS", batch)
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
