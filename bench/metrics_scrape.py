"""A scrape of the metrics exporter with 7 days of 1,000 sensors (DESIGN.md: <= 200 ms).

A private embedded PostgreSQL gets the week of history ``bench/warehouse_refresh.py`` generates
(one reading every 30 s per sensor) plus what a week of minute runs leaves behind: 9 steps a minute
in ``kidjamo.pipeline_runs``, 2 gate results a minute, a quarantine row every few minutes per 100
sensors, alerts (a few open, most resolved) with their notifications. Landing holds the current
minute's file. Then ``--repeat`` scrapes are timed: the collector alone, and ``GET /metrics`` over
HTTP from the running exporter. Medians are printed.

Usage: ``python -m bench.metrics_scrape --days 7 --sensors 1000 --repeat 30``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

from bench.warehouse_refresh import BENCH_KEY, HISTORY_START, load_history_day, write_registry

RUNS_SQL = """
INSERT INTO kidjamo.pipeline_runs (run_id, step, interval_start, interval_end, status, counts, started_at, finished_at)
SELECT 'scheduled__' || to_char(m, 'YYYYMMDD"T"HH24MI'), step, m, m + interval '1 minute', 'success',
       jsonb_build_object('raw_records', 2 * %(sensors)s, 'bronze_rows', 2 * %(sensors)s, 'silver_rows', 2 * %(sensors)s,
                          'gold_rows', %(sensors)s, 'measurements', jsonb_build_object('staged', 2 * %(sensors)s),
                          'views', jsonb_build_object('device_health', 0.05, 'data_quality_daily', 0.01), 'duration_s', 0.5),
       m + interval '1 minute 5 seconds', m + interval '1 minute 20 seconds'
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute', interval '1 minute') AS m
CROSS JOIN unnest(ARRAY['to_raw', 'to_bronze', 'gate_bronze', 'to_silver', 'gate_silver', 'to_gold', 'load', 'alerts',
                        'refresh_views']) AS step
"""
GATES_SQL = """
INSERT INTO kidjamo.data_quality_results (run_id, suite, interval_start, interval_end, success, evaluated, failed_rows)
SELECT 'scheduled__' || to_char(m, 'YYYYMMDD"T"HH24MI'), suite, m, m + interval '1 minute', true, 2 * %(sensors)s, 0
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute', interval '1 minute') AS m
CROSS JOIN unnest(ARRAY['bronze', 'silver']) AS suite
"""
QUARANTINE_SQL = """
INSERT INTO kidjamo.quarantine (raw_file, record_index, layer, reason, detail, original_text, arrival_minute, run_id)
SELECT 'raw/vitals/bench/' || to_char(m, 'YYYYMMDDHH24MI') || '.ndjson', s, 'bronze', 'out_of_range',
       'vitals.spo2: 120 is outside the plausible range 50 to 100', '{}', m, 'bench'
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute', interval '5 minutes') AS m
CROSS JOIN generate_series(1, greatest(1, %(sensors)s / 100)) AS s
"""
ALERTS_SQL = """
WITH opened AS (
    INSERT INTO kidjamo.alerts (patient_id, rule_id, rule_version, severity, status, first_reading_at, last_reading_at,
                                evidence, opened_at, severity_since, resolved_at)
    SELECT format('patient-%%s', lpad((1 + (n * 7) %% %(sensors)s)::text, 6, '0')), 'fever', '1',
           CASE WHEN n %% 3 = 0 THEN 'critical' ELSE 'high' END,
           CASE WHEN n > %(alerts)s - 5 THEN 'open' ELSE 'resolved' END,
           t, t, '{}'::jsonb, t, t, CASE WHEN n > %(alerts)s - 5 THEN NULL ELSE t + interval '20 minutes' END
    FROM generate_series(1, %(alerts)s) AS n,
         LATERAL (SELECT %(start)s::timestamptz + (n * (%(end)s::timestamptz - %(start)s::timestamptz) / (%(alerts)s + 1)) AS t) AS at
    RETURNING alert_id, severity, opened_at
), events AS (
    INSERT INTO kidjamo.alert_events (alert_id, event_key, event_type, severity, event_at)
    SELECT alert_id, alert_id || ':opened', 'opened', severity, opened_at FROM opened RETURNING event_id, event_at
)
INSERT INTO kidjamo.notifications (event_id, channel, status, attempts, sent_at, created_at)
SELECT event_id, 'webhook', 'sent', 1, event_at, event_at FROM events
"""


def load_operations_history(url: str, days: int, sensors: int) -> float:
    """What ``days`` of minute runs leave in the bookkeeping tables; returns seconds taken."""
    from kidjamo.warehouse.database import connect

    started = time.perf_counter()
    bounds = {"start": HISTORY_START, "end": HISTORY_START + timedelta(days=days), "sensors": sensors,
              "alerts": 50 * days}
    with connect(url, application_name="bench-operations") as connection:
        for statement in (RUNS_SQL, GATES_SQL, QUARANTINE_SQL, ALERTS_SQL):
            connection.execute(statement, bounds)
    with connect(url, autocommit=True) as connection:
        for table in ("pipeline_runs", "data_quality_results", "quarantine", "alerts", "notifications"):
            connection.execute(f"VACUUM ANALYZE kidjamo.{table}")
    return time.perf_counter() - started


def load_week(url: str, workdir: str, days: int, sensors: int) -> dict:
    """Migrate, import the registry, generate ``days`` of history; return the seconds per part."""
    from kidjamo.warehouse import migrations
    from transforms.registry import import_registry

    migrations.migrate(url)
    registry = os.path.join(workdir, "registry.csv")
    write_registry(registry, sensors)
    import_registry(registry, url, pseudonym_key=BENCH_KEY)
    measurements_s = sum(load_history_day(url, day, sensors) for day in range(days))
    return {"measurements_s": measurements_s, "operations_s": load_operations_history(url, days, sensors)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30, help="timed scrapes (after 3 warm-up ones)")
    args = parser.parse_args(argv)

    import httpx
    from prometheus_client import generate_latest

    from kidjamo.warehouse.embedded_pg import EmbeddedPostgres, free_port
    from kidjamo.ops.exporter import ExporterConfig, registry_for, serve
    from kidjamo.lake.partitions import minute_partition
    from kidjamo.lake.storage import Lake

    workdir = tempfile.mkdtemp(prefix="kidjamo-bench-metrics-")
    server = EmbeddedPostgres(os.path.join(workdir, "pg"))
    try:
        url = server.start()
        loading = load_week(url, workdir, args.days, args.sensors)
        lake = Lake(f"file://{os.path.join(workdir, 'lake')}")
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        lake.write_bytes(f"landing/vitals/{minute_partition(now)}/ingest-bench.ndjson", b"{}\n" * 2 * args.sensors)
        config = ExporterConfig(url, lake, {"escalation": 300.0, "second_tier": 900.0})

        registry = registry_for(config)
        collect_s = []
        for index in range(args.repeat + 3):
            started = time.perf_counter()
            text = generate_latest(registry)
            if index >= 3:
                collect_s.append(time.perf_counter() - started)
        assert b"kidjamo_exporter_database_up 1.0" in text, text[:500]

        port, stop = free_port(), threading.Event()
        thread = threading.Thread(target=serve, args=(config, "127.0.0.1", port, stop), daemon=True)
        thread.start()
        time.sleep(0.5)
        http_s = []
        with httpx.Client() as client:
            for index in range(args.repeat + 3):
                started = time.perf_counter()
                response = client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                if index >= 3:
                    http_s.append(time.perf_counter() - started)
                response.raise_for_status()
        stop.set()

        from kidjamo.warehouse.database import connect

        with connect(url) as connection:
            rows = connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0]
            runs = connection.execute("SELECT count(*) FROM kidjamo.pipeline_runs").fetchone()[0]
            version = connection.execute("SHOW server_version").fetchone()[0]
        result = {"rows": rows, "pipeline_runs": runs, "collect_ms": 1000 * statistics.median(collect_s),
                  "collect_max_ms": 1000 * max(collect_s), "http_ms": 1000 * statistics.median(http_s),
                  "http_max_ms": 1000 * max(http_s), **loading}
        print(f"\nMetrics exporter scrape, {args.days} days of {args.sensors} sensors: PostgreSQL {version}, "
              f"{platform.machine()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}, median of {args.repeat}")
        print(f"  measurements {rows:,} rows, pipeline_runs {runs:,} rows (history generated in "
              f"{loading['measurements_s'] + loading['operations_s']:.0f} s)")
        print(f"  collect  median {result['collect_ms']:.1f} ms, max {result['collect_max_ms']:.1f} ms")
        print(f"  GET /metrics median {result['http_ms']:.1f} ms, max {result['http_max_ms']:.1f} ms (target <= 200 ms)")
        return result
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
