"""One arrival minute, landing -> alerts, in-process (DESIGN.md: 10k sensors <= 1.5 s; 100k <= 7 s, < 1.5 GB).

Each size runs in a fresh child process against its own KIDJAMO_HOME (embedded PostgreSQL, local
lake): one warm-up minute (imports, Great Expectations start-up), then ``--repeat`` measured
minutes, each with new readings. Before each minute is processed, the floor of its own rows is
measured (``bench/floor.py``), so every figure is also reported as a multiple of the floor.
Reported: median wall time per step, landing -> gold (the lake steps) and in total (landing ->
alerts: load, alerts and view refresh included), the floor, the ratio, the pipeline's peak RSS (the largest
VmHWM while a measured minute runs; readings are generated in a forked process), and
the median CPU seconds of a minute in the benchmark's process and in its PostgreSQL server
(``bench/cpu.py``: steadier than wall time on a shared machine).
``--profile DIR`` writes a pyinstrument profile of the last measured minute (text) to DIR.
Usage: ``python -m bench.pipeline_minute --sensors 10000 100000 --repeat 3``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

FIRST_ARRIVAL = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
GOLD_STEPS = ("to_raw", "to_bronze", "gate_bronze", "to_silver", "gate_silver", "to_gold")  # landing -> gold


def _child(sensors: int, repeat: int, profile_dir: str | None) -> dict:
    from bench.cpu import own_cpu_seconds, postmaster_pid, server_cpu_seconds
    from bench.fleet import PeakMemory, land_minute_in_child, prepare
    from bench.floor import measure_floor
    from transforms.pipeline import process_interval

    url, lake, fleet = prepare(sensors)
    server = postmaster_pid(url)

    runs = []
    with tempfile.TemporaryDirectory(prefix="kidjamo-floor-") as scratch:
        for index in range(repeat + 1):
            arrival = FIRST_ARRIVAL + timedelta(minutes=index)
            rows = land_minute_in_child(lake, fleet, arrival)
            floor = measure_floor(lake, url, arrival, Path(scratch))["floor_s"]
            profiler = None
            if profile_dir and index == repeat:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.002)
                profiler.start()
            started, cpu_started, server_started = time.perf_counter(), own_cpu_seconds(), server_cpu_seconds(server)
            with PeakMemory() as memory:
                counts = process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url,
                                          run_id=f"bench-{index}")
            total = time.perf_counter() - started
            cpu, server_cpu = own_cpu_seconds() - cpu_started, server_cpu_seconds(server) - server_started
            if profiler:
                profiler.stop()
                Path(profile_dir, f"pipeline_minute_{sensors}.txt").write_text(
                    profiler.output_text(unicode=True, show_all=False))
            steps = {name: step.get("duration_s") for name, step in counts.items()}
            runs.append({"readings": rows, "total_s": total, "floor_s": floor, "steps": steps, "cpu_s": cpu,
                         "server_cpu_s": server_cpu, "peak_rss_mb": memory.peak_mb,
                         "silver": counts["to_silver"]["silver_rows"]})
    measured = runs[1:]
    return {
        "sensors": sensors,
        "readings": measured[0]["readings"],
        "silver_rows": measured[0]["silver"],
        "median_s": statistics.median(r["total_s"] for r in measured),
        "floor_s": statistics.median(r["floor_s"] for r in measured),
        "runs_s": [round(r["total_s"], 3) for r in measured],
        "cpu_s": round(statistics.median(r["cpu_s"] for r in measured), 3),
        "server_cpu_s": round(statistics.median(r["server_cpu_s"] for r in measured), 3),
        "warmup_s": round(runs[0]["total_s"], 3),
        "median_steps_s": {name: round(statistics.median(r["steps"][name] for r in measured), 3) for name in measured[0]["steps"]},
        # The pipeline's own peak: the largest RSS while a measured minute was processed (the
        # readings are generated in a forked process; set-up, fleet and floor are outside it).
        "peak_rss_mb": max(r["peak_rss_mb"] for r in measured),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", metavar="DIR", help="write a pyinstrument profile of the last minute to DIR")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.sensors[0], args.repeat, args.profile)))
        return []
    from bench.fleet import load_average, run_in_fresh_home
    from bench.floor import ratio

    extra = []
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        extra = ["--profile", str(Path(args.profile).resolve())]
    results = [run_in_fresh_home("bench.pipeline_minute", ["--sensors", str(n), "--repeat", str(args.repeat), *extra])
               for n in args.sensors]
    print(f"landing -> alerts, in-process; load average {load_average()}")
    print(f"{'sensors':>8} {'readings':>9} {'median s':>9} {'floor s':>8} {'x floor':>8} {'to gold s':>9} {'runs s':>22} "
          f"{'peak RSS MB':>12} {'CPU s':>6} {'PG CPU s':>8}  steps, slowest first (median s)")
    for result in results:
        to_gold = sum(result["median_steps_s"][name] for name in GOLD_STEPS)
        slowest = sorted(result["median_steps_s"].items(), key=lambda item: -(item[1] or 0))
        print(f"{result['sensors']:>8} {result['readings']:>9} {result['median_s']:>9.2f} {result['floor_s']:>8.3f} "
              f"{ratio(result['median_s'], result['floor_s']):>8} {to_gold:>9.2f} {str(result['runs_s']):>22} "
              f"{result['peak_rss_mb']:>12.0f} {result['cpu_s']:>6.2f} {result['server_cpu_s']:>8.2f}  " + ", ".join(f"{k} {v}" for k, v in slowest))
    return results


if __name__ == "__main__":
    main()
