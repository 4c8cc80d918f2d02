"""The per-minute database step as history grows (target, README "Performance": <= 2 s with 7 days loaded, flat).

A private embedded PostgreSQL (or ``--database-url``, a database this benchmark may fill) gets a
registry of ``--sensors`` patients with one device each, then history is generated server-side
(``generate_series``, one reading every 30 s per sensor, 2,880 a day) one day at a time, with the
hourly rollups computed the way the loads do. After day 1 and after the last day, ``--repeat``
minutes are measured, each: ``load_measurements`` of one new minute (2 readings per sensor, an
Arrow SILVER table) + ``refresh_views`` (per-minute views). The heavy refresh (maintenance
schedule) is measured once at each point too. Medians are printed.

Usage: ``python -m bench.warehouse_refresh --days 7 --sensors 1000 --repeat 7``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa

HISTORY_START = datetime(2026, 11, 1, tzinfo=timezone.utc)
BENCH_KEY = "bench-pseudonym-key"

#: History stops this long before midnight: the measured minutes then land in an hour already
#: almost full, the costliest moment for the hourly rollup (its cost follows the hour's readings).
MEASURED_GAP = timedelta(minutes=10)

HISTORY_SQL = """
INSERT INTO {table} (
    device_id, patient_id, measured_at, spo2, heart_rate, temperature, ambient_temp, respiratory_rate,
    hydration_pct, activity_level, pain_scale, battery_level, signal_quality, firmware_version,
    raw_file, record_index, record_hash, arrival_minute, age_years, age_band, genotype, care_team,
    spo2_baseline, news2_partial, heat_index_c, physiological_strain_index, spo2_low_confidence,
    low_battery, weak_signal, delay_seconds, is_late, run_id)
SELECT format('device-%%s', lpad(s::text, 6, '0')), format('patient-%%s', lpad(s::text, 6, '0')), ts,
       88 + random() * 11, 60 + random() * 60, 36 + random() * 2, 18 + random() * 12, 14 + random() * 12,
       55 + random() * 40, floor(random() * 11), floor(random() * 11), 20 + random() * 80, 40 + random() * 60, 'v2.1.3',
       'raw/vitals/' || to_char(ts AT TIME ZONE 'UTC', '"dt="YYYY-MM-DD"/hh="HH24"/mm="MI') || '/bench.ndjson',
       s, md5(s::text || ts::text) || md5(ts::text || s::text), date_trunc('minute', ts) + interval '1 minute',
       11.5, 'school', 'HbSS', 'team-' || (s %% 10), 95, NULL, 24, 1.5, false, false, false, 45, false, 'bench-history'
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '30 seconds', interval '30 seconds') AS ts
CROSS JOIN generate_series(1, %(sensors)s) AS s
"""

ROLLUP_SQL = """
SELECT kidjamo.recompute_vitals_hourly(array_agg(format('patient-%%s', lpad(s::text, 6, '0'))), array_agg(hour))
FROM generate_series(1, %(sensors)s) AS s
CROSS JOIN generate_series(%(start)s::timestamptz, %(start)s::timestamptz + interval '23 hours', interval '1 hour') AS hour
"""


def write_registry(path: str, sensors: int) -> None:
    ids = [f"{i:06d}" for i in range(1, sensors + 1)]
    with open(path, "w") as handle:
        handle.write("patient_id,birth_date,sex,genotype,device_id,care_team,baseline_spo2\n")
        handle.writelines(f"patient-{i},2015-01-01,F,HbSS,device-{i},team-{int(i) % 10},95\n" for i in ids)


def minute_batch(sensors: int, minute: datetime, rng: np.random.Generator) -> pa.Table:
    """One arrival minute of silver rows: 2 readings per sensor, vectorized."""
    from kidjamo.lake.schema import SILVER

    n = 2 * sensors
    index = np.arange(n)
    sensor = index % sensors + 1
    ids = np.char.zfill((sensor).astype(str), 6)
    naive = np.datetime64(minute.replace(tzinfo=None), "us")
    measured = np.array([naive - np.timedelta64(60, "s"), naive - np.timedelta64(30, "s")])[index // sensors]
    arrival = pa.array(np.full(n, naive), pa.timestamp("us", tz="UTC"))
    partition = f"raw/vitals/dt={minute:%Y-%m-%d}/hh={minute:%H}/mm={minute:%M}/bench.ndjson"
    columns = {
        "device_id": np.char.add("device-", ids), "patient_id": np.char.add("patient-", ids),
        "measured_at": pa.array(measured, pa.timestamp("us", tz="UTC")), "message_id": pa.nulls(n, pa.string()),
        "spo2": 88 + rng.random(n) * 11, "heart_rate": 60 + rng.random(n) * 60, "temperature": 36 + rng.random(n) * 2,
        "ambient_temp": 18 + rng.random(n) * 12, "respiratory_rate": 14 + rng.random(n) * 12, "hydration_pct": 55 + rng.random(n) * 40,
        "activity_level": rng.integers(0, 11, n).astype(np.int16), "pain_scale": rng.integers(0, 11, n).astype(np.int16),
        "ambient_humidity": pa.nulls(n, pa.float64()), "battery_level": 20 + rng.random(n) * 80, "signal_quality": 40 + rng.random(n) * 60,
        "firmware_version": np.full(n, "v2.1.3"), "extra_fields": np.zeros(n, np.int16), "raw_file": np.full(n, partition),
        "record_index": index.astype(np.int32), "record_hash": np.char.zfill(index.astype(str), 64),
        "arrival_minute": arrival, "ingested_at": arrival, "age_years": np.full(n, 11.5), "age_band": np.full(n, "school"),
        "genotype": np.full(n, "HbSS"), "care_team": np.char.add("team-", (sensor % 10).astype(str)), "spo2_baseline": np.full(n, 95.0),
        "heart_rate_baseline": pa.nulls(n, pa.float64()), "temperature_baseline": pa.nulls(n, pa.float64()),
        "hydration_baseline": pa.nulls(n, pa.float64()), "news2_partial": pa.nulls(n, pa.int16()), "news2_max_parameter": pa.nulls(n, pa.int16()),
        "heat_index_c": np.full(n, 24.0), "heat_index_unknown": np.ones(n, bool), "physiological_strain_index": np.full(n, 1.5),
        "spo2_low_confidence": np.zeros(n, bool), "low_battery": np.zeros(n, bool), "weak_signal": np.zeros(n, bool),
        "delay_seconds": np.full(n, 45.0), "is_late": np.zeros(n, bool),
    }
    return pa.table({field.name: pa.array(columns[field.name], field.type) for field in SILVER}, schema=SILVER)


def load_history_day(url: str, day: int, sensors: int) -> float:
    """One day of readings (up to MEASURED_GAP before midnight) and its hourly rollups."""
    from kidjamo.warehouse.database import connect

    start = HISTORY_START + timedelta(days=day)
    end = start + timedelta(days=1) - MEASURED_GAP
    partition = f"kidjamo.measurements_{start:%Y%m%d}"
    started = time.perf_counter()
    with connect(url, application_name="bench-history") as connection:
        # Bulk-load a detached table, then attach it: building its indexes once is much faster
        # than maintaining them row by row (benchmark set-up only; loads go through the parent).
        connection.execute(f"CREATE TABLE {partition} (LIKE kidjamo.measurements INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        connection.execute(HISTORY_SQL.format(table=partition), {"start": start, "end": end, "sensors": sensors})
        first, after = f"'{start.isoformat()}'", f"'{(start + timedelta(days=1)).isoformat()}'"
        # the CHECK proves the bounds, so ATTACH skips its validation scan
        connection.execute(f"ALTER TABLE {partition} ADD CONSTRAINT bench_bounds CHECK (measured_at >= {first} AND measured_at < {after})")
        connection.execute(f"ALTER TABLE kidjamo.measurements ATTACH PARTITION {partition} FOR VALUES FROM ({first}) TO ({after})")
        connection.execute(f"ALTER TABLE {partition} DROP CONSTRAINT bench_bounds")
        connection.execute(ROLLUP_SQL, {"start": start, "sensors": sensors})
    with connect(url, autocommit=True) as connection:
        connection.execute(f"VACUUM ANALYZE {partition}")
        connection.execute("ANALYZE kidjamo.vitals_hourly_rollup")
    return time.perf_counter() - started


def measure(url: str, days_loaded: int, sensors: int, repeat: int, rng: np.random.Generator) -> dict:
    """``repeat`` minutes right after the history: load + per-minute refresh, then one heavy refresh."""
    from transforms.load import load_measurements
    from transforms.views import refresh_views

    first_minute = HISTORY_START + timedelta(days=days_loaded) - MEASURED_GAP + timedelta(minutes=1)
    loads, refreshes, totals = [], [], []
    assert repeat + 1 < MEASURED_GAP.total_seconds() / 60, "the measured minutes must fit in the gap left before midnight"
    for index in range(repeat + 1):  # the first minute warms the caches and is not counted
        batch = minute_batch(sensors, first_minute + timedelta(minutes=index), rng)
        started = time.perf_counter()
        result = load_measurements(url, batch, f"bench-{days_loaded}-{index}")
        loaded = time.perf_counter()
        refresh_views(url, pseudonym_key=BENCH_KEY)
        finished = time.perf_counter()
        assert result["inserted"] == batch.num_rows, result
        if index:
            loads.append(loaded - started)
            refreshes.append(finished - loaded)
            totals.append(finished - started)
    started = time.perf_counter()
    heavy = refresh_views(url, heavy=True, pseudonym_key=BENCH_KEY)
    heavy_s = time.perf_counter() - started
    from kidjamo.warehouse.database import connect

    with connect(url) as connection:
        rows = connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0]
    return {"days": days_loaded, "rows": rows, "load_s": statistics.median(loads), "refresh_s": statistics.median(refreshes),
            "step_s": statistics.median(totals), "step_max_s": max(totals), "heavy_s": heavy_s, "heavy_views": heavy["views"]}


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """--database-url and --pg-bin-dir: where the benchmark's warehouse lives."""
    parser.add_argument("--database-url", help="an existing, migrated-or-empty database to fill (default: a private embedded server)")
    parser.add_argument("--pg-bin-dir", help="PostgreSQL binaries of the private server (default: embedded PostgreSQL 18)")


@contextmanager
def fleet_database(args: argparse.Namespace, prefix: str) -> Iterator[tuple[str, str]]:
    """A migrated warehouse holding the registry of ``args.sensors`` devices, for the ``with`` block: (url, server version).

    ``args.database_url`` when given, else a private embedded server in a scratch folder named ``prefix…``,
    stopped and removed at the end of the block.
    """
    from kidjamo.warehouse import migrations
    from kidjamo.warehouse.database import connect
    from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
    from transforms.registry import import_registry

    workdir = tempfile.mkdtemp(prefix=prefix)
    server = None
    try:
        if args.database_url:
            url = args.database_url
        else:
            server = EmbeddedPostgres(os.path.join(workdir, "pg"), bin_dir=args.pg_bin_dir)
            url = server.start()
        migrations.migrate(url)
        registry = os.path.join(workdir, "registry.csv")
        write_registry(registry, args.sensors)
        import_registry(registry, url, pseudonym_key=BENCH_KEY)
        with connect(url) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        yield url, version
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="days of history (measured after day 1 and after the last)")
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7, help="measured minutes at each point")
    add_database_arguments(parser)
    args = parser.parse_args(argv)

    with fleet_database(args, "kidjamo-bench-warehouse-") as (url, version):
        rng = np.random.default_rng(7)

        results, history_s = [], 0.0
        for day in range(args.days):
            history_s += load_history_day(url, day, args.sensors)
            if day + 1 in (1, args.days):
                results.append(measure(url, day + 1, args.sensors, args.repeat, rng))
                print(f"  measured after day {day + 1} (history generation so far {history_s:.0f} s)", flush=True)
        print(f"\nPer-minute database step ({args.sensors} sensors, {2 * args.sensors} readings a minute): "
              f"PostgreSQL {version}, {platform.machine()}, {os.cpu_count()} CPUs, median of {args.repeat} minutes")
        print(f"{'history':>8} {'rows':>12} {'load s':>8} {'refresh s':>10} {'step s':>8} {'max s':>7} {'heavy s':>8}")
        for r in results:
            print(f"{r['days']:>6} d {r['rows']:>12,} {r['load_s']:>8.3f} {r['refresh_s']:>10.3f} {r['step_s']:>8.3f} {r['step_max_s']:>7.3f} {r['heavy_s']:>8.3f}")
        if len(results) == 2:
            print(f"step growth from day {results[0]['days']} to day {results[1]['days']}: x{results[1]['step_s'] / results[0]['step_s']:.2f}"
                  f" (target: <= 2 s and flat); heavy views at day {results[1]['days']}: {results[1]['heavy_views']}")
        return results


if __name__ == "__main__":
    main()
