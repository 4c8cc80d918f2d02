"""A minute of 100,000 sensors split into 1, 2 and 4 shards on 2 local workers (README, "Scaling out").

The workers are two processes of a ``ProcessPoolExecutor`` running the very functions the
``kidjamo_vitals`` DAG maps (``transforms.pipeline.step_*`` with the task's shard), stage by stage
as Airflow schedules them: every shard of a step, then the next step; the joining steps (to_raw,
accounting, view refresh, alerts sweep) as one task. Airflow and Celery themselves are not in the
measurement (``bench/airflow_minute.py`` measures their overhead; tests/deploy runs the real
Celery topology). One child process, its own KIDJAMO_HOME (embedded PostgreSQL, local lake): one
warm-up minute, then ``--repeat`` rounds, each processing a new minute with 1, 2 and 4 shards in
turn (so that the warehouse's growing history weighs on every shard count alike).

Reported per shard count: median wall, the floor of the same rows (``bench/floor.py``) and the
ratio, the speed-up over one shard, each step's wall (the slowest shard) and every shard's time,
peak RSS per worker, and the load average; then the projection of workers for 1 M sensors.
Usage: ``python -m bench.scale --sensors 100000 --repeat 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

FIRST_ARRIVAL = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
SHARD_COUNTS = (1, 2, 4)
WORKERS = 2
#: Steps whose work does not shrink with more workers: they join the shards, or are the one database.
SERIAL_STEPS = ("to_raw", "accounting", "refresh_views", "alerts_sweep")


def run_task(step: str, start: str, end: str, run_id: str, shards: int, shard: int | None, database_url: str) -> dict:
    """One task of a run in a worker: what ``plugins.airflow_glue.run_pipeline_step`` does inside Airflow."""
    from kidjamo.lake.storage import Lake
    from transforms import pipeline

    interval = pipeline.Interval.for_task(datetime.fromisoformat(start), datetime.fromisoformat(end), lake=Lake.from_settings(),
                                          database_url=database_url, run_id=run_id, shards=shards, shard=shard,
                                          drain_landing_backlog=step == "to_raw")
    counts = getattr(pipeline, f"step_{step}")(interval)
    return {"duration_s": counts["duration_s"], "pid": os.getpid(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _warm(_: int) -> int:
    """Import what every task needs, in each worker, before the clock starts (Airflow's workers preload it too)."""
    import expectations  # noqa: F401  (the gates' Great Expectations context)
    import transforms.pipeline  # noqa: F401

    return os.getpid()


def _plan(shards: int) -> list[tuple[str, list[int | None]]]:
    """The run's stages: each step with the shards it runs for (None: the step joining them)."""
    from transforms.pipeline import SHARDED_STEPS, STEPS

    if shards == 1:
        return [(step.__name__.removeprefix("step_"), [None]) for step in STEPS]
    return [(step.__name__.removeprefix("step_"), list(range(shards)) if sharded else [None])
            for step, sharded in SHARDED_STEPS]


def _run_minute(pool: ProcessPoolExecutor, arrival: datetime, shards: int, database_url: str, run_id: str) -> dict:
    start, end = arrival.isoformat(), (arrival + timedelta(minutes=1)).isoformat()
    steps, shard_times, rss = {}, {}, {}
    started = time.perf_counter()
    for step, shard_list in _plan(shards):
        stage_started = time.perf_counter()
        results = list(pool.map(run_task, [step] * len(shard_list), [start] * len(shard_list), [end] * len(shard_list),
                                [run_id] * len(shard_list), [shards] * len(shard_list), shard_list,
                                [database_url] * len(shard_list)))
        steps[step] = time.perf_counter() - stage_started
        shard_times[step] = [r["duration_s"] for r in results]
        for r in results:
            rss[r["pid"]] = max(rss.get(r["pid"], 0), r["peak_rss_mb"])
    return {"total_s": time.perf_counter() - started, "steps": steps, "shard_times": shard_times, "rss": rss}


def _child(sensors: int, repeat: int) -> dict:
    from bench.fleet import land_minute, load_average, prepare
    from bench.floor import measure_floor

    url, lake, fleet = prepare(sensors)
    loads = [load_average()]
    runs: dict[int, list[dict]] = {shards: [] for shards in SHARD_COUNTS}
    minute = 0
    with ProcessPoolExecutor(max_workers=WORKERS) as pool, tempfile.TemporaryDirectory(prefix="kidjamo-floor-") as scratch:
        list(pool.map(_warm, range(WORKERS)))
        for round_index in range(repeat + 1):
            for shards in SHARD_COUNTS if round_index else (2,):  # round 0: a warm-up minute on both workers
                arrival = FIRST_ARRIVAL + timedelta(minutes=minute)
                minute += 1
                readings = land_minute(lake, fleet, arrival)
                floor = measure_floor(lake, url, arrival, Path(scratch))["floor_s"]
                run = _run_minute(pool, arrival, shards, url, f"scale-{shards}-{arrival:%H%M}")
                if round_index:
                    runs[shards].append({**run, "floor_s": floor, "readings": readings})
            loads.append(load_average())
    summary = {}
    for shards, measured in runs.items():
        summary[shards] = {
            "readings": measured[0]["readings"],
            "median_s": statistics.median(r["total_s"] for r in measured),
            "runs_s": [round(r["total_s"], 2) for r in measured],
            "floor_s": statistics.median(r["floor_s"] for r in measured),
            "steps_s": {step: round(statistics.median(r["steps"][step] for r in measured), 3) for step in measured[0]["steps"]},
            "shard_times_s": {step: [round(statistics.median(r["shard_times"][step][i] for r in measured), 3)
                                     for i in range(len(measured[0]["shard_times"][step]))]
                              for step in measured[0]["shard_times"]},
            "peak_rss_mb_per_worker": sorted(round(v) for v in
                                             {pid: max(r["rss"].get(pid, 0) for r in measured)
                                              for run in measured for pid in run["rss"]}.values()),
        }
    return {"sensors": sensors, "workers": WORKERS, "load_average": loads, "shards": summary}


def projection(result: dict, sensors: int = 1_000_000, budget_s: float = 60.0) -> dict:
    """Workers needed for ``sensors`` within ``budget_s``, from the measured per-shard figures.

    Per sharded step, a shard's time is fitted as ``fixed + per_reading * readings`` through the
    one-shard and four-shard figures (the slowest shard's time, a task's own work). The joining
    steps (four-shard figures) and the load at one shard (one PostgreSQL) are scaled linearly with
    readings and never divided by workers. With W workers and W shards the minute takes serial + load + sum(fixed + per_reading *
    readings / W) over the other sharded steps.
    """
    one, four = result["shards"]["1"], result["shards"]["4"]
    readings_now = one["readings"]
    scale = sensors / result["sensors"]
    readings = readings_now * scale
    serial = sum(four["steps_s"].get(step, 0) for step in SERIAL_STEPS) * scale  # accounting and sweep are steps of N > 1
    database = max(one["shard_times_s"]["load"]) * scale
    fitted = {}
    for step, times in four["shard_times_s"].items():
        if step in SERIAL_STEPS or step == "load" or len(times) != 4:
            continue
        per_reading = max(0.0, (max(one["shard_times_s"][step]) - max(times)) / (readings_now - readings_now / 4))
        fixed = max(0.0, max(times) - per_reading * readings_now / 4)
        fitted[step] = (fixed, per_reading)
    fixed_total = sum(fixed for fixed, _ in fitted.values())
    per_reading_total = sum(per for _, per in fitted.values())
    room = budget_s - serial - database - fixed_total
    workers = None if room <= 0 else max(1, int(-(-per_reading_total * readings // room)))
    return {"sensors": sensors, "readings": int(readings), "serial_s": round(serial, 1), "database_s": round(database, 1),
            "sharded_fixed_s": round(fixed_total, 2), "sharded_per_reading_us": round(per_reading_total * 1e6, 2),
            "sharded_work_s": round(per_reading_total * readings, 1), "budget_s": budget_s, "workers": workers,
            "fits": room > 0}


def report(result: dict) -> str:
    from bench.floor import ratio

    lines = [f"a minute of {result['sensors']:,} sensors on {result['workers']} worker processes; "
             f"load average (1/5/15 min) through the run: {' | '.join(result['load_average'])}",
             f"{'shards':>6} {'readings':>9} {'median s':>9} {'runs s':>22} {'floor s':>8} {'x floor':>8} "
             f"{'speed-up':>8} {'peak RSS MB per worker':>24}"]
    base = result["shards"]["1"]["median_s"]
    for shards, figures in result["shards"].items():
        lines.append(f"{shards:>6} {figures['readings']:>9} {figures['median_s']:>9.2f} {str(figures['runs_s']):>22} "
                     f"{figures['floor_s']:>8.3f} {ratio(figures['median_s'], figures['floor_s']):>8} "
                     f"{base / figures['median_s']:>8.2f} {str(figures['peak_rss_mb_per_worker']):>24}")
    lines.append("step wall (s; every shard's own time in brackets):")
    for shards, figures in result["shards"].items():
        lines.append(f"  {shards} shard(s): " + ", ".join(
            f"{step} {wall}" + (f" {figures['shard_times_s'][step]}" if len(figures['shard_times_s'][step]) > 1 else "")
            for step, wall in figures["steps_s"].items()))
    plan = projection(result)
    lines.append(
        f"1 M sensors ({plan['readings']:,} readings) within {plan['budget_s']:.0f} s: serial steps {plan['serial_s']} s + "
        f"database load {plan['database_s']} s + sharded fixed {plan['sharded_fixed_s']} s + sharded work "
        f"{plan['sharded_work_s']} s / W  ->  " + (f"W >= {plan['workers']} workers" if plan["fits"] else
                                                  "does not fit: the serial part alone exceeds the minute"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.sensors, args.repeat)))
        return None
    from bench.fleet import run_in_fresh_home

    result = run_in_fresh_home("bench.scale", ["--sensors", str(args.sensors), "--repeat", str(args.repeat)])
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "projection": projection(result)}, indent=2))
    return result


if __name__ == "__main__":
    main()
