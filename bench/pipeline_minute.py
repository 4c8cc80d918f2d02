"""One arrival minute, landing -> alerts, in-process (targets, README "Performance": 10k sensors <= 2 s; 100k <= 10 s, < 1.5 GB).

Each size runs in a fresh child process against its own KIDJAMO_HOME (embedded PostgreSQL, local
lake): one warm-up minute (imports, Great Expectations start-up), then ``--repeat`` measured
minutes, each with new readings. Reported: median wall time per step, landing -> gold (the lake
steps) and in total (landing -> alerts: load, alerts and view refresh included), and the child's
peak RSS. Usage: ``python -m bench.pipeline_minute --sensors 10000 100000 --repeat 3``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from datetime import datetime, timedelta, timezone

FIRST_ARRIVAL = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
GOLD_STEPS = ("to_raw", "to_bronze", "gate_bronze", "to_silver", "gate_silver", "to_gold")  # landing -> gold


def _child(sensors: int, repeat: int) -> dict:
    from bench.fleet import land_minute, prepare
    from transforms.pipeline import process_interval

    url, lake, fleet = prepare(sensors)

    runs = []
    for index in range(repeat + 1):
        arrival = FIRST_ARRIVAL + timedelta(minutes=index)
        rows = land_minute(lake, fleet, arrival)
        started = time.perf_counter()
        counts = process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url, run_id=f"bench-{index}")
        total = time.perf_counter() - started
        steps = {name: step.get("duration_s") for name, step in counts.items()}
        runs.append({"readings": rows, "total_s": total, "steps": steps, "silver": counts["to_silver"]["silver_rows"]})
    measured = runs[1:]
    return {
        "sensors": sensors,
        "readings": measured[0]["readings"],
        "silver_rows": measured[0]["silver"],
        "median_s": statistics.median(r["total_s"] for r in measured),
        "runs_s": [round(r["total_s"], 3) for r in measured],
        "warmup_s": round(runs[0]["total_s"], 3),
        "median_steps_s": {name: round(statistics.median(r["steps"][name] for r in measured), 3) for name in measured[0]["steps"]},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.sensors[0], args.repeat)))
        return []
    from bench.fleet import run_in_fresh_home

    results = [run_in_fresh_home("bench.pipeline_minute", ["--sensors", str(n), "--repeat", str(args.repeat)])
               for n in args.sensors]
    print(f"{'sensors':>8} {'readings':>9} {'median s':>9} {'to gold s':>9} {'runs s':>22} {'peak RSS MB':>12}  steps, slowest first (median s)")
    for result in results:
        to_gold = sum(result["median_steps_s"][name] for name in GOLD_STEPS)
        slowest = sorted(result["median_steps_s"].items(), key=lambda item: -(item[1] or 0))
        print(f"{result['sensors']:>8} {result['readings']:>9} {result['median_s']:>9.2f} {to_gold:>9.2f} {str(result['runs_s']):>22} "
              f"{result['peak_rss_mb']:>12.0f}  " + ", ".join(f"{k} {v}" for k, v in slowest))
    return results


if __name__ == "__main__":
    main()
