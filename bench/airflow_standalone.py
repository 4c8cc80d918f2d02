"""A real ``airflow standalone`` for the benchmarks: started on a free port, healthy, stopped as a group.

The same components a deployment runs (api-server, scheduler with the LocalExecutor, dag-processor,
triggerer), on SQLite metadata under ``$KIDJAMO_HOME/airflow``, with the project's DAGs; only
``kidjamo_vitals`` is unpaused. Runs are created through the REST API, as the UI does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import httpx

from kidjamo.cli.airflow_env import PROJECT_ROOT, airflow_environment, start_standalone
from kidjamo.warehouse.embedded_pg import free_port
from kidjamo.settings import get_settings

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class Airflow:
    """A running Airflow: its API client (authenticated) and its process group."""

    api: httpx.Client
    process: subprocess.Popen
    log_path: Path

    def trigger_minute(self, arrival_minute: datetime, run_id: str) -> None:
        """Create the run of ``kidjamo_vitals`` that processes ``arrival_minute`` (its logical date ends it)."""
        body = {"dag_run_id": run_id, "logical_date": (arrival_minute + timedelta(minutes=1)).isoformat()}
        for _ in range(30):  # SQLite metadata is briefly locked while the scheduler writes
            response = self.api.post("/api/v2/dags/kidjamo_vitals/dagRuns", json=body)
            if response.status_code != 503:
                response.raise_for_status()
                return
            time.sleep(1)
        response.raise_for_status()

    def run(self, run_id: str) -> dict:
        return self.api.get(f"/api/v2/dags/kidjamo_vitals/dagRuns/{run_id}").raise_for_status().json()

    def wait_for_run(self, run_id: str, timeout_s: float = 600, poll_s: float = 0.5) -> dict:
        """Poll until the run ends; its JSON (state, start_date, end_date). Raises if it failed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["state"] in ("success", "failed"):
                if run["state"] == "failed":
                    raise RuntimeError(f"run {run_id} failed; see {self.log_path}")
                return run
            time.sleep(poll_s)
        raise TimeoutError(f"run {run_id} still {run['state']} after {timeout_s} s")

    def task_instances(self, run_id: str) -> list[dict]:
        return self.api.get(f"/api/v2/dags/kidjamo_vitals/dagRuns/{run_id}/taskInstances").raise_for_status().json()[
            "task_instances"]


def _healthy(base_url: str) -> bool:
    try:
        health = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    return all(health.get(component, {}).get("status") == "healthy"
               for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"))


@contextmanager
def airflow_standalone(database_url: str, *, parallelism: int = 4, timeout_s: float = 600) -> Iterator[Airflow]:
    """Start ``airflow standalone`` against the warehouse ``database_url``; stop its whole group at exit."""
    settings = get_settings()
    port = free_port()
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
        **airflow_environment(settings, api_port=port, parallelism=parallelism),
        "AIRFLOW_CONN_KIDJAMO_POSTGRES": database_url,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([str(Path(AIRFLOW).parent), os.environ.get("PATH", "")]),
    }
    log_path = settings.airflow_home / "standalone.log"
    process = start_standalone(AIRFLOW, environment, log_path)
    base_url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base_url, timeout=60)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"airflow standalone did not become healthy; see {log_path}")
            time.sleep(2)
        password = json.loads((settings.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = api.post("/auth/token", json={"username": "admin", "password": password}).raise_for_status().json()
        api.headers["Authorization"] = f"Bearer {token['access_token']}"
        while api.get("/api/v2/dags/kidjamo_vitals").status_code != 200:  # parsed by the dag-processor
            if time.monotonic() > deadline:
                raise RuntimeError(f"kidjamo_vitals never appeared; see {log_path}")
            time.sleep(2)
        api.patch("/api/v2/dags/kidjamo_vitals", json={"is_paused": False}).raise_for_status()
        yield Airflow(api, process, log_path)
    finally:
        api.close()
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the group (api-server, scheduler, dag-processor, triggerer, tasks), SIGKILL what is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
