"""The pipeline's metrics exporter (``kidjamo metrics serve``): state read from the warehouse and the lake.

The pipeline's tasks live for seconds, so they expose nothing themselves; this long-running exporter
answers each Prometheus scrape by reading what the tasks left behind: ``kidjamo.pipeline_runs``
(freshness, readings per layer, failures, view refresh times), ``kidjamo.quarantine``,
``kidjamo.data_quality_results``, ``kidjamo.alerts``, ``kidjamo.notifications``, and landing in the
lake (backlog, free disk). Every query is an index lookup or touches only the newest interval, so a
scrape stays cheap however much history the warehouse holds (``bench/metrics_scrape.py``).

When the database cannot be read, the scrape still answers, with ``kidjamo_exporter_database_up 0``,
so that Prometheus tells "database unreachable" apart from "exporter down" (``up == 0``).
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator

import psycopg
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kidjamo.warehouse.database import libpq_url
from kidjamo.logs import get_logger
from kidjamo.lake.landing import landing_backlog
from kidjamo.lake.storage import Lake

log = get_logger("kidjamo.exporter")

MONITOR_ROLE = "kidjamo_monitor"
#: Layer -> (pipeline step that writes it, path of the count in that step's counts).
LAYER_COUNTS = {
    "raw": ("to_raw", ("raw_records",)),
    "bronze": ("to_bronze", ("bronze_rows",)),
    "silver": ("to_silver", ("silver_rows",)),
    "gold": ("to_gold", ("gold_rows",)),
    "warehouse": ("load", ("measurements", "staged")),  # loaded or already there (re-runs)
}
#: Freshness stage -> the step whose success means a minute got that far.
STAGES = {"gold": "to_gold", "warehouse": "load", "alerts": "alerts"}

# The newest successful run of each step, by the end of its interval (index pipeline_runs_newest_success).
# With several shards (KIDJAMO_SHARDS) a step has one row per shard, run ids ``<run>#shard-k-of-n``:
# the counts of every shard of that run and interval are returned, to be summed.
_NEWEST_RUNS = """
SELECT s.step, r.run_id, r.interval_start, r.interval_end, r.counts, r.finished_at,
       (SELECT jsonb_agg(o.counts) FROM kidjamo.pipeline_runs AS o
        WHERE o.step = s.step AND o.status = 'success' AND o.interval_end = r.interval_end
          AND o.interval_start = r.interval_start
          AND split_part(o.run_id, '#shard-', 1) = split_part(r.run_id, '#shard-', 1)) AS shard_counts
FROM unnest(%(steps)s::text[]) AS s(step)
CROSS JOIN LATERAL (
    SELECT run_id, interval_start, interval_end, counts, finished_at FROM kidjamo.pipeline_runs
    WHERE step = s.step AND status = 'success' ORDER BY interval_end DESC LIMIT 1
) AS r
"""
_FAILURES = """
SELECT step, count(*) FROM kidjamo.pipeline_runs
WHERE status = 'failed' AND finished_at > now() - interval '1 hour' GROUP BY step
"""
_QUARANTINE = """
SELECT reason, count(*) FROM kidjamo.quarantine
WHERE arrival_minute >= %(start)s AND arrival_minute < %(end)s GROUP BY reason
"""
_GATES = """
SELECT s.suite, g.success, g.failed_rows, g.evaluated
FROM (SELECT DISTINCT suite FROM kidjamo.gate_daily) AS s
CROSS JOIN LATERAL (
    SELECT success, failed_rows, evaluated FROM kidjamo.data_quality_results
    WHERE suite = s.suite ORDER BY interval_end DESC, validated_at DESC LIMIT 1
) AS g
"""
_GATES_TODAY = """
SELECT suite, validations - failed_validations, failed_validations FROM kidjamo.gate_daily
WHERE day = (now() AT TIME ZONE 'UTC')::date
"""
_ALERTS = "SELECT severity, status, count(*) FROM kidjamo.alerts WHERE status <> 'resolved' GROUP BY 1, 2"
_OLDEST_CRITICAL = """
SELECT extract(epoch FROM now() - min(severity_since)) FROM kidjamo.alerts
WHERE status = 'open' AND severity = 'critical'
"""
_NOTIFICATIONS = """
SELECT status, count(*), extract(epoch FROM now() - min(created_at)) FROM kidjamo.notifications
WHERE status IN ('pending', 'sending', 'failed') GROUP BY status
"""


@dataclass(frozen=True)
class ExporterConfig:
    """Where the exporter reads, and the clinical escalation times it exports beside the alert ages."""

    database_url: str
    lake: Lake
    escalation_after_s: dict[str, float]  # tier -> seconds an unacknowledged critical alert waits before it


class PipelineCollector(Collector):
    """A prometheus-client collector that reads the pipeline's state at each scrape."""

    def __init__(self, config: ExporterConfig, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.config = config
        self.clock = clock
        # One connection kept across scrapes (opening one costs more than every query of a scrape);
        # the lock serializes concurrent scrapes on it.
        self._connection: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            connection = psycopg.connect(libpq_url(self.config.database_url), connect_timeout=3, autocommit=True,
                                         application_name="kidjamo-exporter")
            connection.execute("SET statement_timeout = '2s'")  # never hold a scrape longer than that
            connection.execute(f"SET ROLE {MONITOR_ROLE}")  # counts and times only: no patient data
            self._connection = connection
        return self._connection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        now = self.clock()
        database_up = GaugeMetricFamily("kidjamo_exporter_database_up", "1 if the warehouse answered this scrape, else 0.")
        with self._lock:
            try:
                families = list(self._warehouse(self._connect(), now))
                database_up.add_metric([], 1)
            except psycopg.Error as error:
                log.warning("warehouse unreachable", error=f"{type(error).__name__}: {error}"[:300])
                if self._connection is not None:
                    self._connection.close()  # reconnect at the next scrape (the server may have restarted)
                families = []
                database_up.add_metric([], 0)
        yield database_up
        yield from families
        yield from self._lake(now)
        duration = GaugeMetricFamily("kidjamo_exporter_scrape_duration_seconds", "Time this scrape took to read the state.")
        duration.add_metric([], time.perf_counter() - started)
        yield duration

    # --- warehouse ---------------------------------------------------------------------------------
    def _warehouse(self, connection: psycopg.Connection, now: datetime) -> Iterator[GaugeMetricFamily]:
        steps = sorted({*STAGES.values(), *(step for step, _ in LAYER_COUNTS.values()), "refresh_views"})
        newest = {step: (run_id, start, end, _summed(shard_counts or [counts]), finished)
                  for step, run_id, start, end, counts, finished, shard_counts
                  in connection.execute(_NEWEST_RUNS, {"steps": steps})}

        newest_minute = GaugeMetricFamily(
            "kidjamo_pipeline_newest_minute_timestamp_seconds",
            "Start of the newest arrival minute that got through the stage (Unix time).", labels=["stage"])
        freshness = GaugeMetricFamily(
            "kidjamo_pipeline_freshness_seconds",
            "Seconds since the end of the newest arrival minute that got through the stage (about 60-90 when healthy).",
            labels=["stage"])
        for stage, step in STAGES.items():
            if step in newest:
                interval_end = newest[step][2]
                newest_minute.add_metric([stage], interval_end.timestamp() - 60)
                freshness.add_metric([stage], max(0.0, (now - interval_end).total_seconds()))
        yield newest_minute
        yield freshness

        per_minute = GaugeMetricFamily(
            "kidjamo_pipeline_minute_readings",
            "Readings per arrival minute in the newest interval each layer's step processed.", labels=["layer"])
        for layer, (step, path) in LAYER_COUNTS.items():
            if step in newest:
                _, start, end, counts, _ = newest[step]
                for key in path:
                    counts = counts.get(key) if isinstance(counts, dict) else None
                per_minute.add_metric([layer], float(counts or 0) / _minutes(start, end))
        yield per_minute

        quarantined = GaugeMetricFamily(
            "kidjamo_pipeline_minute_quarantined",
            "Quarantined records per arrival minute in the newest loaded interval, by reason.", labels=["reason"])
        share = GaugeMetricFamily(
            "kidjamo_pipeline_quarantine_share",
            "Share of the newest loaded interval's raw records quarantined for a reason other than duplicate.")
        if "load" in newest:
            _, start, end, _, _ = newest["load"]
            minutes = _minutes(start, end)
            by_reason = dict(connection.execute(_QUARANTINE, {"start": start, "end": end}).fetchall())
            for reason, count in sorted(by_reason.items()):
                quarantined.add_metric([reason], count / minutes)
            raw = newest.get("to_raw")
            raw_records = raw[3].get("raw_records") if raw and raw[1] == start and raw[2] == end else None
            if raw_records:
                bad = sum(count for reason, count in by_reason.items() if reason != "duplicate")
                share.add_metric([], bad / raw_records)
        yield quarantined
        yield share

        failures = GaugeMetricFamily("kidjamo_pipeline_step_failures", "Pipeline steps that failed in the last hour.",
                                     labels=["step"])
        failed = dict(connection.execute(_FAILURES).fetchall())
        for step in sorted({*steps, *failed}):
            failures.add_metric([step], failed.get(step, 0))
        yield failures

        refresh = GaugeMetricFamily("kidjamo_views_refresh_seconds",
                                    "Duration of the newest per-minute refresh of each analytics view.", labels=["view"])
        if "refresh_views" in newest:
            for view, seconds in sorted((newest["refresh_views"][3].get("views") or {}).items()):
                refresh.add_metric([view], float(seconds))
        yield refresh

        yield from self._gates(connection)
        yield from self._alerts(connection)

    def _gates(self, connection: psycopg.Connection) -> Iterator[GaugeMetricFamily]:
        last = GaugeMetricFamily("kidjamo_gate_last_success", "1 if the newest validation of the gate passed, else 0.",
                                 labels=["suite"])
        failed_rows = GaugeMetricFamily("kidjamo_gate_last_failed_rows", "Rows the newest validation of the gate rejected.",
                                        labels=["suite"])
        for suite, success, rows, _ in connection.execute(_GATES):
            last.add_metric([suite], 1 if success else 0)
            failed_rows.add_metric([suite], rows)
        today = GaugeMetricFamily("kidjamo_gate_validations_today", "Gate validations since 00:00 UTC, by outcome.",
                                  labels=["suite", "outcome"])
        for suite, passed, failed in connection.execute(_GATES_TODAY):
            today.add_metric([suite, "passed"], passed)
            today.add_metric([suite, "failed"], failed)
        yield from (last, failed_rows, today)

    def _alerts(self, connection: psycopg.Connection) -> Iterator[GaugeMetricFamily]:
        open_alerts = GaugeMetricFamily("kidjamo_alerts_open", "Clinical alerts not resolved, by severity and status.",
                                        labels=["severity", "status"])
        counts = {(severity, status): n for severity, status, n in connection.execute(_ALERTS)}
        for severity in ("critical", "high", "warning", "info"):
            for status in ("open", "acknowledged"):
                open_alerts.add_metric([severity, status], counts.get((severity, status), 0))
        yield open_alerts
        oldest = connection.execute(_OLDEST_CRITICAL).fetchone()[0]
        yield GaugeMetricFamily(
            "kidjamo_alerts_oldest_unacknowledged_critical_seconds",
            "How long the oldest open (unacknowledged) critical alert has been critical; 0 when there is none.",
            value=float(oldest or 0))
        escalation = GaugeMetricFamily("kidjamo_alerts_escalation_after_seconds",
                                       "When an unacknowledged critical alert escalates, per tier (clinical rules).",
                                       labels=["tier"])
        for tier, seconds in sorted(self.config.escalation_after_s.items()):
            escalation.add_metric([tier], seconds)
        yield escalation

        notifications = GaugeMetricFamily("kidjamo_notifications", "Notifications not yet sent, and those given up on.",
                                          labels=["status"])
        oldest_pending = GaugeMetricFamily("kidjamo_notifications_oldest_unsent_seconds",
                                           "Age of the oldest notification still pending or being sent; 0 when none.")
        rows = {status: (count, age) for status, count, age in connection.execute(_NOTIFICATIONS)}
        for status in ("pending", "sending", "failed"):
            notifications.add_metric([status], rows.get(status, (0, 0))[0])
        ages = [float(rows[s][1]) for s in ("pending", "sending") if s in rows]
        oldest_pending.add_metric([], max(ages) if ages else 0.0)
        yield notifications
        yield oldest_pending

    # --- lake --------------------------------------------------------------------------------------
    def _lake(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        lake = self.config.lake
        lake_up = GaugeMetricFamily("kidjamo_exporter_lake_up", "1 if the lake could be listed this scrape, else 0.")
        try:
            backlog = landing_backlog(lake, now)
        except OSError as error:
            log.warning("lake unreachable", error=f"{type(error).__name__}: {error}"[:300])
            lake_up.add_metric([], 0)
            yield lake_up
            return
        lake_up.add_metric([], 1)
        yield lake_up
        yield GaugeMetricFamily("kidjamo_landing_backlog_files", "Landing files waiting to be copied to raw.",
                                value=backlog.files)
        yield GaugeMetricFamily("kidjamo_landing_backlog_bytes", "Bytes waiting in landing.", value=backlog.bytes)
        yield GaugeMetricFamily("kidjamo_landing_backlog_minutes", "Arrival minutes with files waiting in landing.",
                                value=backlog.minutes)
        yield GaugeMetricFamily("kidjamo_landing_oldest_age_seconds",
                                "Seconds since the oldest arrival minute waiting in landing ended; 0 when none waits.",
                                value=backlog.oldest_age_s)
        yield GaugeMetricFamily("kidjamo_landing_unpublished_parts",
                                "In-progress ingestion parts of ended minutes (a writer that cannot publish).",
                                value=backlog.unpublished_parts)
        if not lake.is_s3:
            usage = shutil.disk_usage(lake.local_path(""))
            yield GaugeMetricFamily("kidjamo_lake_disk_free_bytes", "Free bytes on the lake's (landing's) file system.",
                                    value=usage.free)
            yield GaugeMetricFamily("kidjamo_lake_disk_size_bytes", "Size of the lake's (landing's) file system.",
                                    value=usage.total)


def _minutes(start: datetime, end: datetime) -> float:
    return max(1.0, (end - start).total_seconds() / 60.0)


def registry_for(config: ExporterConfig, clock: Callable[[], datetime] | None = None) -> CollectorRegistry:
    """A registry holding only the pipeline collector (no process metrics of the exporter itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(config, clock) if clock else PipelineCollector(config))
    return registry


def serve(config: ExporterConfig, host: str, port: int, stop: threading.Event | None = None) -> None:
    """Serve ``/metrics`` on host:port until ``stop`` is set (or forever)."""
    server, thread = start_http_server(port, addr=host, registry=registry_for(config))
    log.info("metrics exporter listening", address=f"http://{host}:{port}/metrics")
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _summed(counts: list[dict]) -> dict:
    """One step's counts summed over its shards (numbers added, other values from the first shard)."""
    total = dict(counts[0])
    for more in counts[1:]:
        for key, value in more.items():
            if isinstance(value, dict) and isinstance(total.get(key), dict):
                total[key] = _summed([total[key], value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(total.get(key), (int, float)):
                total[key] = total[key] + value
    return total
