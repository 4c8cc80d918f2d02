"""The environment Airflow runs in locally (``make run``, tests): one place, so they all agree.

Airflow keeps its metadata in SQLite under ``$KIDJAMO_HOME/airflow`` and runs tasks with the
LocalExecutor, sized for a 2-core machine. Production uses docker-compose.airflow.yml instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from kidjamo.warehouse.embedded_pg import free_port
from kidjamo.settings import Settings, get_settings
from plugins.pools import POOLS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"

def pool_commands(airflow: str) -> list[list[str]]:
    """The ``airflow pools set`` commands that create the DAGs' pools (:data:`plugins.pools.POOLS`)."""
    return [[airflow, "pools", "set", pool.name, str(pool.slots), pool.description] for pool in POOLS]


def prepare_airflow(airflow: str, environment: dict[str, str], *, timeout: float = 300) -> None:
    """Migrate Airflow's metadata database and create the DAGs' pools: what a local Airflow needs before it starts.

    Raises RuntimeError with the command's own error output when one fails.
    """
    for command in [[airflow, "db", "migrate"], *pool_commands(airflow)]:
        result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[1:4])} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def start_standalone(airflow: str, environment: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Prepare Airflow (:func:`prepare_airflow`), then start ``airflow standalone`` logging to ``log_path``.

    It runs in a process group of its own (api-server, scheduler, dag-processor, triggerer and their
    tasks), so that the caller can stop all of it at once with ``os.killpg``.
    """
    prepare_airflow(airflow, environment)
    with open(log_path, "wb") as log:
        return subprocess.Popen([airflow, "standalone"], env=environment, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def airflow_environment(settings: Settings | None = None, *, api_port: int = 8080, parallelism: int = 4) -> dict[str, str]:
    """Environment variables for ``airflow`` commands against the local Airflow home."""
    settings = settings or get_settings()
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    metadata_url = f"sqlite:///{home / 'airflow.db'}"
    environment = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),  # the trigger-form interval check
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        # kidjamo_maintenance cleans Airflow's own metadata through this connection (airflow db clean).
        "AIRFLOW_CONN_AIRFLOW_METADATA": json.dumps({"conn_type": "generic", "extra": {"sql_alchemy_conn": metadata_url}}),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        # Log servers on free ports, so that several local Airflows (tests, make run) can coexist.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        # A minute's tasks run one after another: an idle scheduler that looks again after 0.25 s
        # (default 1 s) starts each next task sooner (bench/airflow_minute.py).
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **openlineage_environment(settings),
        "GX_ANALYTICS_ENABLED": "false",
        "KIDJAMO_HOME": str(settings.home),
    }
    return environment


def openlineage_environment(settings: Settings) -> dict[str, str]:
    """Airflow's OpenLineage provider settings: transport, namespace, and the Kidjamo task extractor."""
    kind = settings.openlineage_transport
    if kind == "off":
        return {"AIRFLOW__OPENLINEAGE__DISABLED": "True"}
    if kind == "file":
        settings.lineage_file.parent.mkdir(parents=True, exist_ok=True)
        transport = {"type": "file", "log_file_path": str(settings.lineage_file), "append": True}
    elif kind == "console":
        transport = {"type": "console"}
    elif kind == "http":
        if not settings.openlineage_url:
            raise ValueError("KIDJAMO_OPENLINEAGE_TRANSPORT=http needs KIDJAMO_OPENLINEAGE_URL (e.g. Marquez http://marquez:5000)")
        transport = {"type": "http", "url": settings.openlineage_url, "endpoint": "api/v1/lineage"}
    else:
        raise ValueError(f"KIDJAMO_OPENLINEAGE_TRANSPORT must be file, console, http or off, got {kind!r}")
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": settings.openlineage_namespace,
        "AIRFLOW__OPENLINEAGE__EXTRACTORS": "plugins.lineage.KidjamoTaskExtractor",
    }


def apply_airflow_environment(settings: Settings | None = None, **kwargs) -> dict[str, str]:
    """Set :func:`airflow_environment` in this process (before importing airflow)."""
    environment = airflow_environment(settings, **kwargs)
    os.environ.update(environment)
    return environment
