"""One arrival minute, landing -> alerts, in-process (DESIGN.md: 10k sensors <= 2 s; 100k <= 10 s, < 1.5 GB).

Each size runs in a fresh child process against its own KIDJAMO_HOME (embedded PostgreSQL, local
lake): one warm-up minute (imports, Great Expectations start-up), then ``--repeat`` measured
minutes, each with new readings. Reported: median wall time per step and in total, and the child's
peak RSS. Usage: ``python -m bench.pipeline_minute --sensors 10000 100000 --repeat 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

FIRST_ARRIVAL = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
FILES_PER_MINUTE = 20  # what the ingestion service's group commit produces for a large fleet


def _child(sensors: int, repeat: int) -> dict:
    from ingestion.simulator import Fleet, table_ndjson
    from kidjamo import migrations
    from kidjamo.database import ensure_database
    from kidjamo.storage import Lake
    from ingestion.simulator import landing_path
    from transforms.pipeline import process_interval
    from transforms.registry import import_registry

    url = ensure_database()
    migrations.migrate(url)
    lake = Lake.from_settings()
    fleet = Fleet.generate(sensors, seed=42)
    registry_csv = os.path.join(os.environ["KIDJAMO_HOME"], "registry.csv")
    fleet.write_registry_csv(registry_csv)
    import_registry(registry_csv, url)

    runs = []
    for index in range(repeat + 1):
        arrival = FIRST_ARRIVAL + timedelta(minutes=index)
        table = fleet.readings_table(arrival - timedelta(minutes=1), arrival, hypoxia_patient=True)
        rows = len(table["patient"])
        for part in range(FILES_PER_MINUTE):
            chunk = {name: values[part::FILES_PER_MINUTE] for name, values in table.items()}
            lake.write_bytes(landing_path(arrival, f"bench-{part:03d}"), table_ndjson(fleet, chunk))
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
    results = []
    for sensors in args.sensors:
        with tempfile.TemporaryDirectory(prefix="kidjamo-bench-") as home:
            environment = {**os.environ, "KIDJAMO_HOME": home}
            environment.pop("KIDJAMO_DATABASE_URL", None)
            output = subprocess.run([sys.executable, "-m", "bench.pipeline_minute", "--child", "--sensors", str(sensors),
                                     "--repeat", str(args.repeat)], env=environment, check=True, capture_output=True, text=True)
            subprocess.run([sys.executable, "-m", "kidjamo.cli", "db", "stop"], env=environment, capture_output=True)
            results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    print(f"{'sensors':>8} {'readings':>9} {'median s':>9} {'runs s':>22} {'peak RSS MB':>12}  slowest steps (median s)")
    for result in results:
        slowest = sorted(result["median_steps_s"].items(), key=lambda item: -(item[1] or 0))[:4]
        print(f"{result['sensors']:>8} {result['readings']:>9} {result['median_s']:>9.2f} {str(result['runs_s']):>22} "
              f"{result['peak_rss_mb']:>12.0f}  " + ", ".join(f"{k} {v}" for k, v in slowest))
    return results


if __name__ == "__main__":
    main()
