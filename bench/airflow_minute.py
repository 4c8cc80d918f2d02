"""Airflow run of kidjamo_vitals for one 10,000-sensor minute, wall (DESIGN.md target: <= 8 s).

A real ``airflow standalone`` (api-server, scheduler with the LocalExecutor, dag-processor,
triggerer; ``bench/airflow_standalone.py``) runs, one after the other, the runs of landed minutes
created through the REST API. Reported per run: its wall from start to end as Airflow records it
(the UI's duration), the sum of its tasks' own durations (the work), and what is left (task
process start-up, scheduling between tasks), beside the floor of the same rows
(``bench/floor.py``). The first run is a warm-up. ``airflow dags test`` (one process, every import
paid per run) is reported once for comparison.
Usage: ``python -m bench.airflow_minute --sensors 10000 --repeat 3``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

FIRST_ARRIVAL = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


#: The steps one after the other in kidjamo_vitals (to_gold and refresh_views run beside load and alerts).
CRITICAL_PATH = ("to_raw", "to_bronze", "gate_bronze", "to_silver", "gate_silver", "load", "alerts")


def _step_seconds(database_url: str, run_id: str) -> dict[str, float]:
    """Each step's own duration (its function, without Airflow) as recorded in kidjamo.pipeline_runs."""
    from kidjamo.warehouse.database import connect

    with connect(database_url) as connection:
        return {step: float(seconds) for step, seconds in connection.execute(
            "SELECT step, (counts ->> 'duration_s')::float8 FROM kidjamo.pipeline_runs WHERE run_id = %s", (run_id,))}


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _child(sensors: int, repeat: int) -> dict:
    from bench.airflow_standalone import AIRFLOW, airflow_standalone
    from bench.fleet import land_minute, prepare
    from bench.floor import measure_floor
    from kidjamo.cli.airflow_env import airflow_environment

    url, lake, fleet = prepare(sensors)
    runs = []
    with tempfile.TemporaryDirectory(prefix="kidjamo-floor-") as scratch, airflow_standalone(url) as airflow:
        for index in range(repeat + 1):
            arrival = FIRST_ARRIVAL + timedelta(minutes=index)
            land_minute(lake, fleet, arrival)
            floor = measure_floor(lake, url, arrival, Path(scratch))["floor_s"]
            run_id = f"bench_{index}"
            airflow.trigger_minute(arrival, run_id)
            run = airflow.wait_for_run(run_id)
            tasks = airflow.task_instances(run_id)
            steps = _step_seconds(url, run_id)
            runs.append({"wall_s": _seconds(run["start_date"], run["end_date"]), "floor_s": floor,
                         "work_s": sum(steps.get(step, 0.0) for step in CRITICAL_PATH),
                         "tasks": {t["task_id"]: round(t["duration"] or 0, 2) for t in tasks}})
        # For comparison: the same minute through `airflow dags test` (one process: imports paid per run).
        arrival = FIRST_ARRIVAL + timedelta(minutes=repeat + 1)
        land_minute(lake, fleet, arrival)
        environment = {**os.environ, **airflow_environment(), "AIRFLOW_CONN_KIDJAMO_POSTGRES": url}
        started = time.perf_counter()
        test = subprocess.run([AIRFLOW, "dags", "test", "kidjamo_vitals", (arrival + timedelta(minutes=1)).isoformat()],
                              env=environment, capture_output=True, text=True)
        dags_test_s = time.perf_counter() - started
        if test.returncode != 0:
            raise RuntimeError(f"airflow dags test failed:\n{(test.stdout + test.stderr)[-3000:]}")
    measured = runs[1:]
    return {"sensors": sensors, "warmup_s": round(runs[0]["wall_s"], 2),
            "runs_s": [round(r["wall_s"], 2) for r in measured],
            "median_s": round(statistics.median(r["wall_s"] for r in measured), 2),
            "median_work_s": round(statistics.median(r["work_s"] for r in measured), 2),
            "floor_s": round(statistics.median(r["floor_s"] for r in measured), 3),
            "tasks_s": measured[-1]["tasks"], "dags_test_s": round(dags_test_s, 1)}


def _report(result: dict) -> str:
    from bench.fleet import load_average
    from bench.floor import ratio

    return "\n".join([
        f"kidjamo_vitals in airflow standalone, {result['sensors']} sensors; load average {load_average()}",
        f"run wall: median {result['median_s']} s (runs {result['runs_s']}, warm-up {result['warmup_s']} s); "
        f"target <= 8 s; {ratio(result['median_s'], result['floor_s'])}x the floor ({result['floor_s']} s)",
        f"the steps one after the other, their own work: {result['median_work_s']} s; the rest "
        f"({round(result['median_s'] - result['median_work_s'], 2)} s) is Airflow: scheduling between tasks, "
        f"task process start-up, XCom",
        "last run, per task as Airflow times it (s): " + ", ".join(f"{k} {v}" for k, v in result["tasks_s"].items()),
        f"airflow dags test of one minute, process start to exit: {result['dags_test_s']} s"])


def main(argv: list[str] | None = None) -> dict | None:
    from bench.fleet import child_or_parent

    return child_or_parent("bench.airflow_minute", __doc__.splitlines()[0], argv, {"sensors": 10_000, "repeat": 3},
                           _child, _report)


if __name__ == "__main__":
    main()
