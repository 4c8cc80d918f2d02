"""The pipeline, step by step, for one interval of arrival minutes [start, end).

Each ``step_*`` function is one task of the ``kidjamo_vitals`` DAG and runs as well without
Airflow (tests, ``kidjamo pipeline run``, benchmarks). Steps hand data to each other through the
lake, partitioned by arrival minute, and every step rewrites exactly the partitions of its
interval, so any step can be re-run alone. :func:`process_interval` runs them all, for one minute
or for a whole day in one go; re-processing an interval from raw (the ``kidjamo_reprocess`` DAG) is
the same function, over the interval :func:`parse_interval` reads from the DAG's params.

Every step receives one :class:`Interval`: the task's context (interval, lake, database, settings,
clinical rules, run id), built once per task by :meth:`Interval.for_task`. Nothing below this
module reads the settings or the rules file by itself.
"""

from __future__ import annotations

import contextvars
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from ingestion.to_raw import landing_to_raw
from kidjamo.jsonable import jsonable
from kidjamo.lake.manifest import read_manifest
from kidjamo.lake.partitions import (
    minutes_between, partition_path, read_partitions, remove_other_layouts, shard_file_name, write_partitions,
)
from kidjamo.logs import get_logger, log_context
from kidjamo.warehouse.database import connect, pseudonym_key_for
from kidjamo.settings import Settings, get_settings
from kidjamo.lake.storage import Lake
from transforms.clinical.rules import RuleSet, default_rules
from transforms.bronze import FIELD_QUARANTINE_FILE, raw_to_bronze
from transforms.rights import pipeline_run_guard
from transforms.gold import silver_to_gold
from kidjamo.lake.reasons import DEVICE_FLOODING, GATE_REJECTED
from kidjamo.lake.schema import BRONZE, QUARANTINE, SILVER

log = get_logger(__name__)

GATE_REJECTED_SCHEMA = pa.schema(
    [("raw_file", pa.string()), ("record_index", pa.int32()), ("detail", pa.string()),
     ("arrival_minute", pa.timestamp("us", tz="UTC")), ("reason", pa.string())]
)


SILVER_CANDIDATES = "silver_candidates.parquet"  # to_silver's output, before the silver gate (gates/ layer)
#: Files to_bronze writes: with several shards, each to_bronze task routes its rows to every shard.
ROUTED_FILES = {("bronze", "part-0.parquet"), ("quarantine", "bronze.parquet"), ("quarantine", FIELD_QUARANTINE_FILE)}


class AccountingError(RuntimeError):
    """Records went missing between layers: the run must not be trusted."""


#: The longest interval one re-process run may take: a week of minutes keeps a run within its timeout.
MAX_INTERVAL = timedelta(days=7)


@dataclass
class Interval:
    """The context of one task: arrival minutes [start, end), the lake and database it reads and
    writes, the settings, the clinical rules and the run id (recorded with every row it writes)."""

    start: datetime
    end: datetime
    lake: Lake
    database_url: str
    run_id: str
    settings: Settings
    rules: RuleSet
    #: Minute runs also take landing files of earlier minutes (skipped or failed runs): landing is always drained.
    drain_landing_backlog: bool = False
    #: How many shards the run splits the interval into (README, "Scaling out"), and which one this
    #: task is: None for a step that joins them (to_raw, accounting, view refresh, the alerts sweep).
    shards: int = 1
    shard: int | None = None

    def __post_init__(self) -> None:
        self.start = _utc_minute(self.start)
        self.end = _utc_minute(self.end)
        if self.end <= self.start:
            raise ValueError(f"empty interval: start {self.start:%Y-%m-%dT%H:%MZ} must be before end {self.end:%Y-%m-%dT%H:%MZ}")
        if self.shards < 1 or (self.shard is not None and not 0 <= self.shard < self.shards):
            raise ValueError(f"shard {self.shard} of {self.shards}: expected 0 <= shard < shards and shards >= 1")

    @classmethod
    def for_task(cls, start: datetime, end: datetime, *, lake: Lake, database_url: str, run_id: str,
                 settings: Settings | None = None, rules: RuleSet | None = None,
                 drain_landing_backlog: bool = False, shards: int | None = None, shard: int | None = None) -> "Interval":
        """The context of a task, with the configured settings, rules and shard count unless given.

        Refuses to start against a database that is not the embedded one with a weak pseudonym key
        (:meth:`kidjamo.settings.Settings.checked_pseudonym_key`).
        """
        settings = settings or get_settings()
        pseudonym_key_for(database_url, settings)
        return cls(start, end, lake, database_url, run_id, settings, rules or default_rules(),
                   drain_landing_backlog, shards or settings.shards, shard)

    def for_shard(self, shard: int | None) -> "Interval":
        """The same context for shard ``shard`` (None: the joining steps); a registry already read is shared."""
        other = replace(self, shard=shard)
        if "registry" in self.__dict__:
            other.__dict__["registry"] = self.__dict__["registry"]
        return other

    @property
    def step_run_id(self) -> str:
        """The run id of this task's bookkeeping rows (pipeline_runs, gate results): one per shard.

        Rows of the data (lake, measurements, alerts) carry ``run_id`` itself, the same for every shard.
        """
        if self.shards == 1:
            return self.run_id
        return f"{self.run_id}#shard-{'joined' if self.shard is None else self.shard}-of-{self.shards}"

    @cached_property
    def registry(self) -> pd.DataFrame:
        """The device/patient registry, read once per interval."""
        from transforms.registry import load_registry

        return load_registry(self.database_url)

    def read(self, layer: str, file_name: str, schema: pa.Schema) -> pa.Table:
        """``file_name`` of the interval's partitions: this shard's file, or every shard's for a joining step."""
        if self.shards == 1:
            return read_partitions(self.lake, layer, self.start, self.end, file_name, schema)
        shards = range(self.shards) if self.shard is None else [self.shard]
        sources = range(self.shards) if (layer, file_name) in ROUTED_FILES else [None]
        names = [shard_file_name(file_name, shard, self.shards, source) for shard in shards for source in sources]
        if self.shard is None and (layer, file_name) not in ROUTED_FILES:
            names.append(shard_file_name(file_name, None, self.shards))
        paths = [partition_path(layer, minute, name) for minute in minutes_between(self.start, self.end) for name in names]
        return self.lake.read_parquet([path for path in paths if self.lake.exists(path)], schema)

    def write(self, layer: str, file_name: str, table: pa.Table, *, source: int | None = None) -> int:
        """Rewrite this shard's ``file_name`` in the interval's partitions (``source``: the to_bronze task
        that routed the rows to this shard); files of another shard count are removed."""
        remove_other_layouts(self.lake, layer, self.start, self.end, file_name, self.shards)
        name = shard_file_name(file_name, self.shard, self.shards, source)
        return write_partitions(self.lake, layer, table, self.start, self.end, name)


def _utc_minute(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: pipeline intervals are UTC instants")
    # A plain UTC datetime, whatever came in (Airflow passes pendulum instants).
    moment = datetime.fromtimestamp(moment.timestamp(), tz=timezone.utc)
    if moment.second or moment.microsecond:
        raise ValueError(f"{moment.isoformat()} is not on a minute boundary")
    return moment


def parse_instant(name: str, text: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 date-time on a minute boundary, in UTC, or a ValueError naming ``name`` and what to fix."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 date-time such as 2026-11-26T00:00:00+00:00") from None
    if moment.tzinfo is None:
        if not naive_is_utc:
            raise ValueError(f"{name} {text!r} has no time zone: add +00:00 (UTC) or another offset")
        moment = moment.replace(tzinfo=timezone.utc)
    if moment.second or moment.microsecond:
        raise ValueError(f"{name} {text!r} is not on a minute boundary: arrival minutes are whole minutes")
    return moment.astimezone(timezone.utc)


def parse_interval(start: str, end: str) -> tuple[datetime, datetime]:
    """The UTC interval [start, end) of two ISO 8601 date-times, or a ValueError that says what to fix."""
    bounds = {name: parse_instant(name, text) for name, text in (("start", start), ("end", end))}
    if bounds["end"] <= bounds["start"]:
        raise ValueError(
            f"end ({bounds['end']:%Y-%m-%d %H:%M} UTC) must be after start ({bounds['start']:%Y-%m-%d %H:%M} UTC): "
            "kidjamo_reprocess re-processes arrival minutes [start, end)")
    if bounds["end"] - bounds["start"] > MAX_INTERVAL:
        raise ValueError(f"[start, end) spans {bounds['end'] - bounds['start']}, more than {MAX_INTERVAL.days} days: "
                         "split it into several runs")
    return bounds["start"], bounds["end"]


# --- bookkeeping ---------------------------------------------------------------------------------
def record_step(interval: Interval, step: str, status: str, counts: dict, started: float) -> dict:
    """Upsert the step's row in kidjamo.pipeline_runs (re-running a step replaces its counts); return the counts."""
    counts = {**counts, "duration_s": round(time.perf_counter() - started, 3)}
    with connect(interval.database_url) as connection:
        connection.execute(
            """
            INSERT INTO kidjamo.pipeline_runs (run_id, step, interval_start, interval_end, status, counts, finished_at)
            VALUES (%s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (run_id, step) DO UPDATE SET status = excluded.status, counts = excluded.counts,
                interval_start = excluded.interval_start, interval_end = excluded.interval_end,
                finished_at = excluded.finished_at
            """,
            (interval.step_run_id, step, interval.start, interval.end, status, json.dumps(counts, default=str)),
        )
    return counts


def _recorded(step: str, *, sharded: bool = False):
    """Time a step and record its counts (or its failure) in kidjamo.pipeline_runs.

    Each step holds the erasure guard (shared): an erasure in progress holds it back, and waits for
    it, so no step reads a file before an erasure rewrites it and writes it back after. A ``sharded``
    step of a run with several shards runs once per shard, and refuses to run without one.
    """

    def decorate(function):
        def run(interval: Interval) -> dict:
            if sharded and interval.shards > 1 and interval.shard is None:
                raise ValueError(f"step {step} runs once per shard: give the shard (0..{interval.shards - 1})")
            started = time.perf_counter()
            with log_context(run_id=interval.step_run_id, step=step, arrival_minute=interval.start.isoformat(),
                             interval_end=interval.end.isoformat()):
                log.debug("step started")
                try:
                    with pipeline_run_guard(interval.database_url):
                        counts = function(interval)
                except Exception as error:
                    record_step(interval, step, "failed", {"error": f"{type(error).__name__}: {error}"[:2000]}, started)
                    log.error("step failed", error=type(error).__name__, duration_s=round(time.perf_counter() - started, 3))
                    raise
                counts = record_step(interval, step, "success", counts, started)
                log.info("step finished", counts=counts, duration_s=counts["duration_s"])
            return counts

        run.__name__ = function.__name__
        run.__doc__ = function.__doc__
        return run

    return decorate


# --- steps ---------------------------------------------------------------------------------------
@_recorded("to_raw")
def step_to_raw(interval: Interval) -> dict:
    """Landing -> raw: verified byte-exact copies with a manifest; landing files removed after."""
    return landing_to_raw(interval.lake, interval.start, interval.end, run_id=interval.run_id,
                          database_url=interval.database_url, drain_backlog=interval.drain_landing_backlog).counts()


@_recorded("to_bronze", sharded=True)
def step_to_bronze(interval: Interval) -> dict:
    """Raw -> bronze typed rows and bronze quarantine (reason, field, detail, original text).

    With several shards, to_bronze task j types every shards-th raw file from the j-th, and routes
    each row to the shard of its device's patient (transforms.shards): the steps after it find all
    of a device's and a patient's readings of the interval in one shard.
    """
    from transforms.shards import shard_of_devices

    part = None if interval.shards == 1 else (interval.shard, interval.shards)
    result = raw_to_bronze(
        interval.lake, interval.start, interval.end, run_id=interval.run_id,
        registry=interval.registry, ingested_at=interval.end,
        lateness=interval.settings.lateness, future_tolerance=interval.settings.future_tolerance,
        database_url=interval.database_url, write=False, part=part,
    )
    counts = result.counts()
    outputs = (("bronze", "part-0.parquet", result.bronze), ("quarantine", "bronze.parquet", result.quarantine),
               ("quarantine", FIELD_QUARANTINE_FILE, result.field_quarantine))
    if interval.shards == 1:
        for layer, file_name, table in outputs:
            interval.write(layer, file_name, table)
        return counts
    routed = np.zeros(interval.shards, dtype=np.int64)
    for layer, file_name, table in outputs:
        destination = shard_of_devices(table.column("device_id"), interval.registry, interval.shards, unrouted=interval.shard)
        for shard in range(interval.shards):
            rows = table.filter(pa.array(destination == shard))
            interval.for_shard(shard).write(layer, file_name, rows, source=interval.shard)
            if layer == "bronze":
                routed[shard] += rows.num_rows
    return {**counts, "bronze_rows_to_shard": routed.tolist()}


def _record_gate(interval: Interval, result) -> None:
    """Store a gate's outcome: a summary row in PostgreSQL, the full result in the lake (Data Docs)."""
    from expectations.data_docs import save_validation

    save_validation(interval.lake, result.suite, interval.start, interval.step_run_id, result.document)
    with connect(interval.database_url) as connection:
        connection.execute(
            """
            INSERT INTO kidjamo.data_quality_results
                (run_id, suite, interval_start, interval_end, success, evaluated, failed_rows, statistics, results)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (run_id, suite) DO UPDATE SET success = excluded.success, evaluated = excluded.evaluated,
                failed_rows = excluded.failed_rows, statistics = excluded.statistics, results = excluded.results,
                validated_at = now()
            """,
            (interval.step_run_id, result.suite, interval.start, interval.end, result.success, result.evaluated_rows,
             result.rejected.num_rows, json.dumps(result.statistics, default=str), json.dumps(result.results, default=str)),
        )


def _with_arrival(rejected: pa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Attach each rejected row's arrival minute (its partition) from the validated frame, and its reason."""
    keys = frame[["raw_file", "record_index", "arrival_minute"]].drop_duplicates(["raw_file", "record_index"])
    joined = rejected.to_pandas().merge(keys, on=["raw_file", "record_index"], how="left")
    joined["reason"] = GATE_REJECTED
    return joined[GATE_REJECTED_SCHEMA.names]


def _flooding(interval: Interval, frame: pd.DataFrame, rejected: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Devices flooding the batch with bad readings, and their remaining readings as rejections (device_flooding)."""
    from expectations.gate import flooding_devices

    quarantine = interval.read("quarantine", "bronze.parquet", QUARANTINE).select(["device_id", "reason"]).to_pandas()
    keys = frame.set_index(["raw_file", "record_index"]).index
    gate_bad = keys.isin(rejected.set_index(["raw_file", "record_index"]).index)
    # A reading kept with a bad field emptied is a bad reading of its device too (a sensor sending SpO2 150).
    fields = interval.read("quarantine", FIELD_QUARANTINE_FILE, QUARANTINE).to_pandas().set_index(["raw_file", "record_index"])
    field_reason = pd.Series(fields["reason"].reindex(keys).to_numpy(), dtype=object)
    flooding = flooding_devices(
        pd.concat([frame["device_id"], quarantine["device_id"]], ignore_index=True),
        pd.Series(np.concatenate([gate_bad | field_reason.notna().to_numpy(), np.ones(len(quarantine), dtype=bool)])),
        pd.concat([field_reason.fillna(GATE_REJECTED), quarantine["reason"]], ignore_index=True),
        max_bad_share=interval.settings.max_bad_share, min_bad=interval.settings.flood_min_bad,
    )
    taken = frame[frame["device_id"].isin(flooding["device_id"]).to_numpy() & ~gate_bad]
    shares = flooding.set_index("device_id")
    details = [f"device_flooding: device {device!r} sent {shares.at[device, 'bad_readings']} bad readings of "
               f"{shares.at[device, 'readings']} in this batch ({shares.at[device, 'share']:.0%}); all its readings of the batch are set aside"
               for device in taken["device_id"]]
    flooded = pd.DataFrame({"raw_file": taken["raw_file"], "record_index": taken["record_index"], "detail": details,
                            "arrival_minute": taken["arrival_minute"], "reason": DEVICE_FLOODING})
    return flooding, flooded


def _record_device_incidents(interval: Interval, flooding: pd.DataFrame, frame: pd.DataFrame) -> None:
    """One kidjamo.device_incidents row per flooding device and arrival minute (re-running replaces it)."""
    minute_of = frame.groupby("device_id")["arrival_minute"].min()
    with connect(interval.database_url) as connection:
        for row in flooding.itertuples(index=False):
            minute = minute_of.get(row.device_id, interval.start)
            connection.execute(
                """
                INSERT INTO kidjamo.device_incidents (device_id, arrival_minute, kind, readings, bad_readings, reasons, run_id)
                VALUES (%s, %s, 'flooding', %s, %s, %s, %s)
                ON CONFLICT (device_id, arrival_minute, kind) DO UPDATE SET readings = excluded.readings,
                    bad_readings = excluded.bad_readings, reasons = excluded.reasons, run_id = excluded.run_id,
                    detected_at = now()
                """,
                (row.device_id, minute, int(row.readings), int(row.bad_readings), json.dumps(row.reasons), interval.run_id),
            )
    for row in flooding.itertuples(index=False):
        log.warning("device %s flooded %s..%s with %d bad readings of %d: its readings are quarantined (device_flooding)",
                    row.device_id, interval.start, interval.end, row.bad_readings, row.readings)


@_recorded("gate_bronze", sharded=True)
def step_gate_bronze(interval: Interval) -> dict:
    """Great Expectations bronze suite: failing rows set aside for quarantine, batch failures stop the run.

    A device whose share of bad readings exceeds ``max_bad_share`` has all its readings of the batch
    set aside too (``device_flooding``) and is recorded in kidjamo.device_incidents; the others go on.
    """
    from expectations import bronze as bronze_suite
    from expectations.gate import raise_on_failure, run_gate

    bronze = interval.read("bronze", "part-0.parquet", BRONZE)
    frame = bronze.to_pandas()
    suite = bronze_suite.build_suite(interval.start, interval.end, lateness=interval.settings.lateness,
                                     future_tolerance=interval.settings.future_tolerance)
    result = run_gate(suite, frame)
    _record_gate(interval, result)
    raise_on_failure(result)
    rejected = _with_arrival(result.rejected, frame)
    flooding, flooded = _flooding(interval, frame, rejected)
    if not flooding.empty:
        _record_device_incidents(interval, flooding, frame)
        rejected = pd.concat([rejected, flooded], ignore_index=True)
    interval.write("gates", "bronze_rejected.parquet",
                   pa.Table.from_pandas(rejected, schema=GATE_REJECTED_SCHEMA, preserve_index=False))
    return {**result.counts(), "flooding_devices": sorted(flooding["device_id"]), "device_flooding_rows": len(flooded)}


@_recorded("to_silver", sharded=True)
def step_to_silver(interval: Interval) -> dict:
    """Bronze -> silver: deduplicated, registry-joined, enriched with indices, scores and flags."""
    from transforms.clinical.baselines import patient_baselines
    from transforms.silver import bronze_to_silver, loaded_readings

    bronze = interval.read("bronze", "part-0.parquet", BRONZE)
    registry = interval.registry
    result = bronze_to_silver(
        bronze,
        registry=registry,
        baselines=patient_baselines(interval.database_url, registry, at=interval.start, rules=interval.rules),
        loaded=loaded_readings(interval.database_url, bronze),
        gate_rejected=interval.read("gates", "bronze_rejected.parquet", GATE_REJECTED_SCHEMA),
        run_id=interval.run_id,
        late_after=interval.settings.late_after,
        rules=interval.rules,
    )
    # Staged for the silver gate, which writes silver itself: re-running the gate alone then starts
    # again from the same rows (rewriting its own input lost the rows it had rejected).
    interval.write("gates", SILVER_CANDIDATES, result.silver)
    interval.write("quarantine", "silver.parquet", result.rejected)
    return result.counts()


@_recorded("gate_silver", sharded=True)
def step_gate_silver(interval: Interval) -> dict:
    """Great Expectations silver suite; failing rows move from silver to quarantine; accounting checked."""
    from expectations import silver as silver_suite
    from expectations.gate import raise_on_failure, run_gate
    from transforms.silver import gate_rejections

    candidates = interval.read("gates", SILVER_CANDIDATES, SILVER)
    frame = candidates.to_pandas()
    result = run_gate(silver_suite.build_suite(), frame)
    _record_gate(interval, result)
    raise_on_failure(result)
    kept, rejected = gate_rejections(candidates, result.rejected, run_id=interval.run_id)
    interval.write("silver", "part-0.parquet", kept)
    interval.write("quarantine", "silver_gate.parquet", rejected)  # also clears an earlier run's rejections
    counts = result.counts()
    if interval.shards == 1:
        counts["accounting"] = check_accounting(interval)
    return counts


@_recorded("accounting")
def step_accounting(interval: Interval) -> dict:
    """Accounting over every shard of the interval (several shards; with one, gate_silver checks it)."""
    return check_accounting(interval.for_shard(None))


@_recorded("to_gold", sharded=True)
def step_to_gold(interval: Interval) -> dict:
    """Silver -> gold patient-minute features."""
    gold = silver_to_gold(interval.read("silver", "part-0.parquet", SILVER))
    interval.write("gold", "part-0.parquet", gold)
    return {"gold_rows": gold.num_rows}


@_recorded("load", sharded=True)
def step_load(interval: Interval) -> dict:
    """Silver rows and every quarantine row of the interval into PostgreSQL (COPY, idempotent)."""
    from transforms.load import load_measurements, load_quarantine

    silver = interval.read("silver", "part-0.parquet", SILVER)
    quarantine = pa.concat_tables(
        [interval.read("quarantine", name, QUARANTINE)
         for name in ("bronze.parquet", FIELD_QUARANTINE_FILE, "silver.parquet", "silver_gate.parquet")]
    ).combine_chunks()
    return {
        # The hourly rollup is recomputed by the hourly maintenance (flush_hourly_rollup), not per minute.
        "measurements": load_measurements(interval.database_url, silver, interval.run_id, defer_rollup=True),
        "quarantine": load_quarantine(interval.database_url, quarantine, interval.run_id),
    }


@_recorded("alerts", sharded=True)
def step_alerts(interval: Interval) -> dict:
    """Clinical rules over the interval's silver rows and recent history; alerts upserted; notifications sent."""
    from transforms.alerts.store import raise_alerts

    # As pandas at once, the Arrow table let go: the rules work on pandas, and memory peaks here.
    silver = interval.read("silver", "part-0.parquet", SILVER).to_pandas()
    whole = interval.shards == 1  # a shard leaves the sweep over every device and alert to alerts_sweep
    result = raise_alerts(interval.database_url, silver, interval_start=interval.start, interval_end=interval.end,
                          run_id=interval.run_id, rules=interval.rules, settings=interval.settings,
                          quarantine=pa.concat_tables([interval.read("quarantine", name, QUARANTINE)
                                                       for name in ("bronze.parquet", FIELD_QUARANTINE_FILE)]),
                          sweep=whole)
    _write_candidates(interval, result)
    if whole:
        result.update(escalate_and_deliver(interval.database_url, as_of=interval.end, rules=interval.rules,
                                           settings=interval.settings))
    return jsonable(result)


@_recorded("alerts_sweep")
def step_alerts_sweep(interval: Interval) -> dict:
    """After every shard's alerts (several shards): silent devices, auto-resolution, escalation, notifications."""
    from transforms.alerts.store import sweep_alerts

    joined = interval.for_shard(None)
    result = sweep_alerts(joined.database_url, interval_end=joined.end, run_id=joined.run_id, rules=joined.rules,
                          settings=joined.settings)
    _write_candidates(joined, result)
    result.update(escalate_and_deliver(joined.database_url, as_of=joined.end, rules=joined.rules, settings=joined.settings))
    return jsonable(result)


def _write_candidates(interval: Interval, result: dict) -> None:
    """Replace the result's candidates DataFrame by its count, writing it to gold (alert_candidates)."""
    candidates = result.pop("candidates", None)
    if candidates is not None:
        interval.write("gold", "alert_candidates.parquet", _candidates_table(candidates, interval))
        result["candidates"] = len(candidates)


def escalate_and_deliver(database_url: str, *, as_of: datetime, rules: RuleSet,
                         settings: Settings | None = None) -> dict:
    """Escalate unacknowledged alerts and deliver every due notification, whatever state the minute batch is in.

    The alerts step calls it at once for its own alerts; the ``kidjamo_notifications`` DAG calls it
    every minute on its own, so that fast-path alerts are notified and escalated even while the
    batch fails (a gate, the warehouse). Escalations and deliveries happen once however often it runs.
    """
    from transforms.alerts.delivery import deliver_notifications
    from transforms.alerts.escalation import escalate

    settings = settings or get_settings()
    return {"escalations": escalate(database_url, as_of=as_of, rules=rules, settings=settings),
            "notifications": deliver_notifications(database_url, now=as_of, settings=settings)}


@_recorded("refresh_views")
def step_refresh_views(interval: Interval) -> dict:
    """Refresh the per-minute analytics views (CONCURRENTLY)."""
    from transforms.views import refresh_views

    return refresh_views(interval.database_url, pseudonym_key=interval.settings.pseudonym_key)


STEPS = (step_to_raw, step_to_bronze, step_gate_bronze, step_to_silver, step_gate_silver, step_to_gold,
         step_load, step_alerts, step_refresh_views)
#: With several shards: each step, and whether it runs once per shard (True) or once, joining them.
#: Every shard finishes a step before the next starts: to_bronze routes rows to every shard, and the
#: DAG's mapped tasks wait for all of their upstream's map indexes the same way.
SHARDED_STEPS = ((step_to_raw, False), (step_to_bronze, True), (step_gate_bronze, True), (step_to_silver, True),
                 (step_gate_silver, True), (step_accounting, False), (step_to_gold, True), (step_load, True),
                 (step_alerts, True), (step_alerts_sweep, False), (step_refresh_views, False))
#: What ``kidjamo_vitals`` runs side by side once silver is checked: the warehouse (load, then the
#: views) and the alerts — the alerts' history is what earlier minutes loaded (this minute's readings
#: come from silver), so they need not wait for the load. (Gold, a third branch in the DAG, runs
#: before them here: it is short, and one silver table fewer in memory at a time.)
AFTER_SILVER = ((step_load, step_refresh_views), (step_alerts,))


def _step_name(step) -> str:
    """A step's name in counts, logs and ``kidjamo.pipeline_runs`` (``step_to_raw`` -> ``to_raw``)."""
    return step.__name__.removeprefix("step_")


def _run_branches(interval: Interval, branches) -> dict:
    """Run each branch (its steps in order) in its own thread, as the DAG's parallel tasks; counts per step.

    Every branch runs to its end or its first failure, as the DAG's other tasks do when one fails;
    then the first failure (in branch order) is raised. The log context is carried into each thread.
    """
    def run_branch(steps) -> dict:
        return {_step_name(step): step(interval) for step in steps}

    with ThreadPoolExecutor(max_workers=len(branches), thread_name_prefix="kidjamo-step") as pool:
        futures = [pool.submit(contextvars.copy_context().run, run_branch, steps) for steps in branches]
    counts = {}
    for future in futures:
        counts.update(future.result())  # raises the branch's failure
    return counts


def run_steps(interval: Interval) -> dict:
    """Every step over ``interval`` in order, shard by shard where the step is sharded; counts per step
    (a sharded step's counts summed over its shards, with ``by_shard`` listing each shard's).

    With one shard, the warehouse and the alerts run side by side once silver is checked and gold
    written, as in the DAG (:data:`AFTER_SILVER`); the counts keep the order of :data:`STEPS`."""
    if interval.shards == 1:
        after_silver = {step for branch in AFTER_SILVER for step in branch}
        counts = {_step_name(step): step(interval) for step in STEPS if step not in after_silver}
        counts.update(_run_branches(interval, AFTER_SILVER))
        return {_step_name(step): counts[_step_name(step)] for step in STEPS}
    interval.registry  # read once: every shard of the interval routes and checks with the same registry
    counts = {}
    for step, sharded in SHARDED_STEPS:
        name = _step_name(step)
        if not sharded:
            counts[name] = step(interval.for_shard(None))
            continue
        by_shard = [step(interval.for_shard(shard)) for shard in range(interval.shards)]
        total: dict = {}
        for shard_counts in by_shard:
            total = _add_counts(total, shard_counts)
        counts[name] = {**total, "by_shard": by_shard}
    return counts


def process_interval(start: datetime, end: datetime, *, lake: Lake, database_url: str, run_id: str,
                     settings: Settings | None = None, rules: RuleSet | None = None,
                     chunk: timedelta = timedelta(hours=1), drain_landing_backlog: bool = False,
                     shards: int | None = None) -> dict:
    """Run every step for arrival minutes [start, end): one minute, or a whole day in one run.

    ``shards`` (default ``KIDJAMO_SHARDS``) splits the interval as the DAG's mapped tasks do, the
    shards one after the other: the lake, warehouse and alerts come out the same for any count.

    A wide interval is processed ``chunk`` by chunk, in arrival order, so that memory stays bounded;
    each chunk is recorded in kidjamo.pipeline_runs as ``<run_id>#<chunk start>``. Returns the
    counts of each step, summed over the chunks. ``drain_landing_backlog`` makes it a minute run
    (earlier minutes' landing files are taken too); re-processing leaves the current backlog alone.
    """
    whole = Interval.for_task(start, end, lake=lake, database_url=database_url, run_id=run_id, settings=settings,
                              rules=rules, drain_landing_backlog=drain_landing_backlog, shards=shards)
    if whole.end - whole.start <= chunk:
        return run_steps(whole)
    totals: dict = {}
    chunk_start = whole.start
    while chunk_start < whole.end:
        chunk_end = min(chunk_start + chunk, whole.end)
        part = replace(whole, start=chunk_start, end=chunk_end, run_id=f"{run_id}#{chunk_start:%Y%m%dT%H%M}",
                       drain_landing_backlog=drain_landing_backlog and chunk_start == whole.start)
        with log_context(chunk=f"{chunk_start:%Y%m%dT%H%M}"):
            for name, counts in run_steps(part).items():
                totals[name] = _add_counts(totals.get(name, {}), counts)
        chunk_start = chunk_end
    return totals


def _add_counts(total: dict, counts: dict) -> dict:
    """Sum nested numeric counts; other values keep the latest chunk's."""
    merged = dict(total)
    for key, value in counts.items():
        if isinstance(value, dict):
            merged[key] = _add_counts(total.get(key, {}) if isinstance(total.get(key), dict) else {}, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(total.get(key), (int, float)):
            merged[key] = total[key] + value
        else:
            merged[key] = value
    return merged


# --- accounting ----------------------------------------------------------------------------------
def check_accounting(interval: Interval) -> dict:
    """Check, from what is in the lake, that no record of the interval went missing.

    raw records = bronze rows + bronze quarantine; bronze rows = silver + rejected + duplicates.
    """
    raw_records = sum(
        entry["records"] for minute in minutes_between(interval.start, interval.end)
        for entry in read_manifest(interval.lake, minute).values()
    )
    bronze = interval.read("bronze", "part-0.parquet", BRONZE).num_rows
    bronze_quarantine = interval.read("quarantine", "bronze.parquet", QUARANTINE).num_rows
    silver_quarantine = interval.read("quarantine", "silver.parquet", QUARANTINE)
    silver_gate = interval.read("quarantine", "silver_gate.parquet", QUARANTINE).num_rows
    silver = interval.read("silver", "part-0.parquet", SILVER).num_rows
    reasons_column = silver_quarantine.column("reason").to_pylist()
    duplicates = sum(1 for r in reasons_column if r == "duplicate")
    rejected = len(reasons_column) - duplicates + silver_gate
    counts = {"raw_records": raw_records, "bronze": bronze, "bronze_quarantined": bronze_quarantine,
              "silver": silver, "rejected": rejected, "duplicates": duplicates}
    problems = []
    if raw_records != bronze + bronze_quarantine:
        problems.append(f"raw records {raw_records} != bronze {bronze} + quarantined {bronze_quarantine}")
    if bronze != silver + rejected + duplicates:
        problems.append(f"bronze {bronze} != silver {silver} + rejected {rejected} + duplicates {duplicates}")
    if problems:
        raise AccountingError(f"run {interval.run_id} {interval.start:%Y-%m-%dT%H:%MZ}..{interval.end:%H:%MZ}: " + "; ".join(problems))
    return counts


def _candidates_table(candidates: pd.DataFrame, interval: Interval) -> pa.Table:
    """Alert candidates as Parquet, partitioned by the arrival minute of their last reading."""
    frame = candidates.copy()
    if "arrival_minute" not in frame:
        frame["arrival_minute"] = interval.start
    frame = frame.map(lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.set_column(table.schema.get_field_index("arrival_minute"), "arrival_minute",
                            table.column("arrival_minute").cast(pa.timestamp("us", tz="UTC")))
