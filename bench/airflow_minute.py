"""Airflow run of kidjamo_vitals for one 10,000-sensor minute, wall time (target: <= 12 s, README "Performance").

Lands one minute, then times ``airflow dags test kidjamo_vitals T`` (a real DAG run on a migrated
metadata database; tasks execute through Airflow's task runner, without scheduler latency) from
process start to exit. Repeated on new minutes; the median is reported.
Usage: ``python -m bench.airflow_minute --sensors 10000 --repeat 3``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

FIRST_ARRIVAL = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def _child(sensors: int, repeat: int) -> dict:
    from bench.fleet import land_minute, prepare
    from kidjamo.cli.airflow_env import airflow_environment

    url, lake, fleet = prepare(sensors)
    environment = {**os.environ, **airflow_environment(), "AIRFLOW_CONN_KIDJAMO_POSTGRES": url}
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=environment, check=True, capture_output=True)
    walls = []
    for index in range(repeat + 1):
        arrival = FIRST_ARRIVAL + timedelta(minutes=index)
        land_minute(lake, fleet, arrival)
        started = time.perf_counter()
        run = subprocess.run([airflow, "dags", "test", "kidjamo_vitals", (arrival + timedelta(minutes=1)).isoformat()],
                             env=environment, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if run.returncode != 0 or "state=success" not in run.stdout + run.stderr:
            raise RuntimeError(f"airflow dags test failed:\n{(run.stdout + run.stderr)[-3000:]}")
        walls.append(wall)
    return {"sensors": sensors, "warmup_s": round(walls[0], 2), "runs_s": [round(w, 2) for w in walls[1:]],
            "median_s": round(statistics.median(walls[1:]), 2)}


def main(argv: list[str] | None = None) -> dict | None:
    from bench.fleet import child_or_parent

    return child_or_parent("bench.airflow_minute", __doc__.splitlines()[0], argv, {"sensors": 10_000, "repeat": 3},
                           _child, _report)


def _report(result: dict) -> str:
    return (f"airflow dags test kidjamo_vitals, {result['sensors']} sensors: median {result['median_s']} s "
            f"(runs {result['runs_s']}, first {result['warmup_s']} s); target <= 12 s")


if __name__ == "__main__":
    main()
