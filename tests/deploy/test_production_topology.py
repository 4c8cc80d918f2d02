"""The production topology of docker-compose.airflow.yml, run for real on this machine, survives a worker killed mid-run.

Redis (Debian's), Airflow's metadata on PostgreSQL, the warehouse on Debian's PostgreSQL 15, a
SeaweedFS S3 lake, Airflow's api-server, scheduler, dag-processor, triggerer and two Celery workers,
and two ingestion instances, each started with the command and environment the compose file gives
it (tests/deploy/topology.py says what is replaced). A simulated fleet posts a few minutes of readings
through a sticky router to the two ingestion instances while the scheduler runs ``kidjamo_vitals``
every minute; one Celery worker is SIGKILLed (with every process it started) while it runs a task of a
run. The test then checks that the task was retried on the other worker, every run succeeded, and
every acknowledged reading is in silver or in quarantine exactly once, in the lake and in the warehouse.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from ingestion.simulator.fleet import Fleet, Scenario, provision_fleet, read_secrets
from ingestion.simulator.senders import HttpSender, SendStats, run_simulation
from kidjamo.cli.airflow_env import PROJECT_ROOT
from kidjamo.lake.storage import Lake
from transforms.bronze import FIELD_LAYER
from tests.deploy.topology import (
    AIRFLOW_SERVICES, BIN, INGESTION_SERVICES, PG15_BIN, Deployment, copy_logs, missing_binaries,
)

pytestmark = [pytest.mark.slow, pytest.mark.deploy]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "deploy"
DAG_ID = "kidjamo_vitals"
SENSORS = 200
SIMULATED_MINUTES = 3
CLOCK_SPEED = 2.0  # simulated seconds per wall-clock second
STEP_S = 5
#: Faulty devices throughout (fleet positions): readings that bronze quarantines (a clock 10 minutes
#: ahead; out-of-range values among malformed payloads, the rest refused at the door), and re-sends.
FAULTS = (("clock_skew", 3), ("malformed", 5), ("duplicates", 7))
#: Values the test gives the compose file's own variables (.env): a dead worker's task is retried after
#: 20 s instead of 60, and each worker runs two tasks at a time on this 2-core machine.
COMPOSE_VARIABLES = {"AIRFLOW_TASK_HEARTBEAT_TIMEOUT": "20", "AIRFLOW_WORKER_CONCURRENCY": "2", "AIRFLOW_PARALLELISM": "8"}


class StickyRouter:
    """The reverse proxy in front of the ingestion instances: a device always goes to the same one.

    It also paces the simulation: slice ``k`` is sent when ``(k + 1) * step_s / speed`` wall seconds
    have passed, so a few simulated minutes arrive over a shorter, still minute-spanning, wall time.
    """

    def __init__(self, senders: list[HttpSender], *, step_s: int, speed: float):
        self.senders = senders
        self.step_s = step_s
        self.speed = speed
        self.stats = SendStats()
        self._slices = 0
        self._wall_start = time.monotonic()

    async def send(self, readings: list[dict]) -> None:
        self._slices += 1
        delay = self._wall_start + self._slices * self.step_s / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        parts: list[list[dict]] = [[] for _ in self.senders]
        for reading in readings:
            parts[int(reading["device_id"].rsplit("-", 1)[1]) % len(self.senders)].append(reading)
        await asyncio.gather(*(sender.send(part) for sender, part in zip(self.senders, parts) if part))

    def acknowledged(self) -> list[str]:
        return [message_id for sender in self.senders for message_id in sender.stats.acknowledged_ids]

    async def close(self) -> None:
        for sender in self.senders:
            await sender.close()


@pytest.fixture(scope="module")
def deployment():
    missing = missing_binaries()
    if missing:
        pytest.fail("the deploy test needs: " + "; ".join(missing) + " (`make system-deps` and `make venv` install them)")
    started = time.monotonic()
    # Not under pytest's basetemp: every pytest session of the machine resets it to 0700, and the
    # PostgreSQL clusters run as another user (as root, see kidjamo/warehouse/embedded_pg.py).
    root = Path(tempfile.mkdtemp(prefix="kidjamo-deploy-"))
    topology = None
    try:
        topology = Deployment(root, env_overrides=COMPOSE_VARIABLES)
        topology.start_redis()
        topology.start_postgres("airflow-db", None)  # the embedded PostgreSQL 18
        topology.start_postgres("warehouse", PG15_BIN)
        topology.start_lake()
        topology.airflow_init()
        for service in AIRFLOW_SERVICES:
            topology.start_airflow(service)
        topology.workers = topology.start_workers()
        assert len(topology.workers) == 2, "the compose file runs two Celery workers"
        topology.ingestion_urls = [topology.start_ingestion(service) for service in INGESTION_SERVICES]
        topology.wait_until(lambda: _healthy(topology), "the api-server, scheduler, dag-processor and triggerer", 300, 2)
        topology.wait_until(lambda: all("ready." in topology.process(name).log.read_text() for name in topology.workers),
                            "both Celery workers to be ready", 300, 2)
        topology.started_in_s = time.monotonic() - started
        yield topology
    finally:
        if topology is not None:
            topology.stop()
            copy_logs(topology, ARTIFACTS)
        shutil.rmtree(root, ignore_errors=True)


def _healthy(topology: Deployment) -> bool:
    import httpx

    health = httpx.get(topology.url("airflow-apiserver", 8080) + "/api/v2/monitor/health", timeout=5).json()
    return all(health[component]["status"] == "healthy" for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"))


def _metadata(topology: Deployment, query: str, *parameters) -> list[tuple]:
    with psycopg.connect(topology.metadata_url()) as connection:
        return connection.execute(query, parameters).fetchall()


def _airflow_cli(topology: Deployment, *arguments: str) -> None:
    environment = topology.airflow_environment("airflow-scheduler", "airflow-cli")
    result = subprocess.run([str(BIN / "airflow"), *arguments], env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _simulate(topology: Deployment, fleet: Fleet, secrets_path, spool, outcome: dict) -> None:
    """Post SIMULATED_MINUTES of the fleet (ending now) through the router; record what was acknowledged."""
    secrets = read_secrets(secrets_path)
    senders = [HttpSender(url, secrets, spool_dir=spool / str(index), max_attempts=8)
               for index, url in enumerate(topology.ingestion_urls)]
    router = StickyRouter(senders, step_s=STEP_S, speed=CLOCK_SPEED)
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = end - timedelta(minutes=SIMULATED_MINUTES)
    scenarios = [Scenario(kind, fleet.patient_ids[position - 1], start, end) for kind, position in FAULTS]

    async def main():
        try:
            await run_simulation(fleet, router, start=start, end=end, realtime=False, step_s=STEP_S, scenarios=scenarios)
        finally:
            await router.close()

    try:
        asyncio.run(main())
        outcome["acknowledged"] = router.acknowledged()
        outcome["generated"] = router.stats.generated
        outcome["spooled"] = sum(sender.stats.spooled for sender in senders)
        outcome["answered"] = sum(sender.stats.accepted + sender.stats.duplicates + sender.stats.rejected for sender in senders)
        outcome["duplicates"] = sum(sender.stats.duplicates for sender in senders)
    except BaseException as error:  # reported by the test thread
        outcome["error"] = error
    finally:
        outcome["finished_at"] = datetime.now(timezone.utc)


def _kill_a_worker_during_a_task(topology: Deployment, warehouse_url: str) -> tuple[str, list[tuple]]:
    """SIGKILL the worker running a kidjamo_vitals task once readings flow; return it and the task instances it held.

    It waits for a step that counted raw records, so that the killed run carries readings. A task that
    heartbeated at least once is picked (a never-heartbeated one is adopted differently); if it
    finished between the look and the kill, the worker is started again and another is picked.
    """
    def readings_flow() -> bool:
        with psycopg.connect(warehouse_url) as connection:
            return bool(connection.execute("SELECT 1 FROM kidjamo.pipeline_runs WHERE counts ? 'raw_records'"
                                           " AND (counts ->> 'raw_records')::bigint > 0").fetchone())

    topology.wait_until(readings_flow, "a minute run that counted raw records", 300, 0.5)
    running = """SELECT run_id, task_id, map_index, hostname FROM task_instance
                 WHERE dag_id = %s AND state = 'running' AND last_heartbeat_at IS NOT NULL AND hostname = ANY(%s)"""
    for attempt in range(3):
        target = topology.wait_until(lambda: _metadata(topology, running, DAG_ID, topology.workers),
                                     "a kidjamo_vitals task running on a Celery worker", 240, 0.2)
        victim = target[0][3]
        topology.kill(victim)
        held = [row[:3] for row in _metadata(topology, running.replace("AND last_heartbeat_at IS NOT NULL", ""),
                                             DAG_ID, [victim])]
        if held:
            return victim, held
        topology.start_airflow("airflow-worker", victim)  # the task had just finished: try again
    pytest.fail("could not kill a worker while it ran a task in 3 attempts")


def _lake_records(lake: Lake) -> tuple[list[dict], list[dict]]:
    """Every silver row and every quarantine row (a whole record, or one field of a kept reading, layer FIELD_LAYER):
    message_id (read from a quarantined record's text) and lineage."""
    silver, quarantined = [], []
    for file in lake.list_files("silver/vitals"):
        if file.path.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(lake.read_bytes(file.path)), columns=["message_id", "raw_file", "record_index"])
            silver += [row | {"file": file.path} for row in table.to_pylist()]
    for file in lake.list_files("quarantine/vitals"):
        if file.path.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(lake.read_bytes(file.path)), columns=["original_text", "layer", "reason", "raw_file", "record_index"])
            quarantined += [{"message_id": _message_id(row.pop("original_text")), **row, "file": file.path} for row in table.to_pylist()]
    return silver, quarantined


def _message_id(original_text: str) -> str | None:
    """The message_id of a quarantined record's original text (None when it is not a JSON object)."""
    try:
        return json.loads(original_text).get("message_id")
    except (ValueError, AttributeError):
        return None


def test_topology_processes_the_fleet_and_survives_a_killed_worker(deployment: Deployment, tmp_path, monkeypatch):
    topology = deployment
    variables = topology.variables
    # The lake's credentials, for this process's own reads of silver and quarantine.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", variables["LAKE_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", variables["LAKE_SECRET_ACCESS_KEY"])
    owner_url = topology.warehouse_url("kidjamo", variables["WAREHOUSE_DB_PASSWORD"])
    fleet = Fleet.generate(SENSORS, seed=14)
    secrets_path = tmp_path / "simulator" / "secrets.json"
    provision_fleet(owner_url, fleet, secrets_path, pseudonym_key=variables["KIDJAMO_PSEUDONYM_KEY"])

    topology.wait_until(lambda: _metadata(topology, "SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID),
                        "the dag-processor to serialize kidjamo_vitals", 240, 2)
    _airflow_cli(topology, "dags", "unpause", DAG_ID)
    warehouse = topology.warehouse_url("kidjamo", variables["WAREHOUSE_DB_PASSWORD"])
    outcome: dict = {}
    simulation = threading.Thread(target=_simulate, args=(topology, fleet, secrets_path, tmp_path / "spool", outcome))
    simulation.start()
    try:
        victim, held = _kill_a_worker_during_a_task(topology, warehouse)
    finally:
        simulation.join(timeout=SIMULATED_MINUTES * 60 / CLOCK_SPEED + 120)
    assert not simulation.is_alive(), "the simulation did not finish"
    assert "error" not in outcome, repr(outcome.get("error"))
    acknowledged = set(outcome["acknowledged"])
    # Every reading was answered (none left in a spool); re-sends were acknowledged as duplicates.
    assert outcome["spooled"] == 0 and outcome["answered"] == outcome["generated"]
    assert outcome["duplicates"] > 0 and len(acknowledged) >= SENSORS * SIMULATED_MINUTES

    # Every acknowledged reading reaches the warehouse (measurements or quarantine) through the minute runs.

    def loaded() -> set[str]:
        with psycopg.connect(warehouse) as connection:
            measured = {row[0] for row in connection.execute("SELECT message_id FROM kidjamo.measurements")}
            quarantined = {_message_id(row[0]) for row in connection.execute("SELECT original_text FROM kidjamo.quarantine")}
        return measured | quarantined

    topology.wait_until(lambda: acknowledged <= loaded(), "every acknowledged reading in the warehouse", 420, 5)
    _airflow_cli(topology, "dags", "pause", DAG_ID)  # no new run; the started ones finish
    topology.wait_until(lambda: not _metadata(topology, "SELECT 1 FROM dag_run WHERE dag_id = %s AND state IN ('queued', 'running')",
                                              DAG_ID), "the started runs to finish", 300, 5)
    runs = _metadata(topology, "SELECT run_id, state FROM dag_run WHERE dag_id = %s", DAG_ID)
    assert runs and {state for _, state in runs} == {"success"}, runs

    # The killed worker's tasks were retried on the other worker and succeeded.
    survivor = next(name for name in topology.workers if name != victim)
    for run_id, task_id, map_index in held:
        state, try_number, hostname = _metadata(
            topology, "SELECT state, try_number, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s"
                      " AND map_index = %s", DAG_ID, run_id, task_id, map_index)[0]
        assert (state, hostname) == ("success", survivor) and try_number >= 2, (run_id, task_id, state, try_number, hostname)
        killed_tries = _metadata(topology, "SELECT hostname FROM task_instance_history WHERE dag_id = %s AND run_id = %s"
                                           " AND task_id = %s AND map_index = %s", DAG_ID, run_id, task_id, map_index)
        assert (victim,) in killed_tries

    # Nothing lost or doubled: every acknowledged reading is in silver or in quarantine, exactly once.
    lake = Lake(f"s3://{variables['KIDJAMO_LAKE_BUCKET']}", s3_endpoint_url=topology.url("lake", 8333))
    silver_rows, quarantine_rows = _lake_records(lake)
    silver = [row["message_id"] for row in silver_rows]
    quarantined = [row["message_id"] for row in quarantine_rows if row["layer"] != FIELD_LAYER]
    doubled = {m for m, n in Counter(silver + quarantined).items() if n > 1}
    assert not doubled, json.dumps([row for row in silver_rows + quarantine_rows if row["message_id"] in doubled], default=str)
    assert set(silver) | set(quarantined) == acknowledged
    assert quarantined, "the faulty devices' readings are quarantined"
    # A reading with one bad field is kept (in silver) with that field emptied; the field is quarantined.
    emptied_fields = [row["message_id"] for row in quarantine_rows if row["layer"] == FIELD_LAYER]
    assert emptied_fields and set(emptied_fields) <= set(silver)
    with psycopg.connect(warehouse) as connection:
        measurements = [row[0] for row in connection.execute("SELECT message_id FROM kidjamo.measurements")]
        warehouse_quarantine = connection.execute("SELECT count(*) FILTER (WHERE layer <> %s), count(*) FILTER (WHERE layer = %s)"
                                                  " FROM kidjamo.quarantine", (FIELD_LAYER, FIELD_LAYER)).fetchone()
        accounting = [row[0] for row in connection.execute(
            "SELECT counts -> 'accounting' FROM kidjamo.pipeline_runs WHERE counts ? 'accounting' AND status = 'success'")]
    assert sorted(measurements) == sorted(silver)
    assert warehouse_quarantine == (len(quarantined), len(emptied_fields))
    for counts in accounting:
        assert counts["raw_records"] == counts["bronze"] + counts["bronze_quarantined"], counts
        assert counts["bronze"] == counts["silver"] + counts["rejected"] + counts["duplicates"], counts
    assert sum(counts["raw_records"] for counts in accounting) == len(acknowledged)
    print(f"deploy topology: started in {topology.started_in_s:.0f} s; {len(acknowledged)} readings acknowledged, "
          f"{len(silver)} in silver, {len(quarantined)} in quarantine; {len(runs)} runs; killed {victim} during {held}")
