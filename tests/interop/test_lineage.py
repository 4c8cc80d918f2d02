"""OpenLineage: a real DAG run (``dag.test()``) emits, through Airflow's provider, an event per task
with the lake layers and warehouse tables it read and wrote, to the file transport set up by
``kidjamo.cli.airflow_env``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.settings import get_settings
from kidjamo.lake.storage import Lake
from plugins.lineage import STEP_LINEAGE
from tests.layers.helpers import ARRIVAL
from transforms.registry import import_registry

pytestmark = pytest.mark.slow

RUN_AFTER = ARRIVAL + timedelta(minutes=1)


@pytest.fixture(scope="module")
def lineage_events(airflow_home, migrated_url, tmp_path_factory) -> list[dict]:
    """The OpenLineage events of one kidjamo_vitals run over a landed minute."""
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import DAGS_FOLDER

    fleet = Fleet.generate(3, seed=21)
    import_registry(fleet.write_registry_csv(tmp_path_factory.mktemp("registry") / "registry.csv"), migrated_url, pseudonym_key="test-key")
    write_landing(Lake.from_settings(), ARRIVAL, fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL), name="lineage")
    lineage_file = get_settings().lineage_file
    already = lineage_file.read_text().count("\n") if lineage_file.exists() else 0
    run = DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"].test(logical_date=RUN_AFTER)
    assert run.state == "success"
    events = [json.loads(line) for line in lineage_file.read_text().splitlines()[already:] if line.strip()]
    return [event for event in events if event["job"]["name"].startswith("kidjamo_vitals.")]


def _datasets(event: dict, side: str) -> set[tuple[str, str]]:
    return {(dataset["namespace"], dataset["name"]) for dataset in event.get(side, [])}


def test_every_task_of_the_run_emits_a_start_and_a_complete_event(lineage_events):
    tasks = {event["job"]["name"].removeprefix("kidjamo_vitals.") for event in lineage_events}
    assert tasks == {"raw.to_raw", "bronze.to_bronze", "bronze.gate_bronze", "silver.to_silver", "silver.gate_silver",
                     "gold.to_gold", "warehouse.load", "warehouse.refresh_views", "alerts.raise_alerts"}
    for task in tasks:
        kinds = {event["eventType"] for event in lineage_events if event["job"]["name"] == f"kidjamo_vitals.{task}"}
        assert {"START", "COMPLETE"} <= kinds, (task, kinds)
    assert {event["job"]["namespace"] for event in lineage_events} == {"kidjamo"}


def test_task_events_name_the_lake_layers_and_warehouse_tables_they_read_and_write(lineage_events, migrated_url):
    lake_root = Path(Lake.from_settings().local_path(""))
    from urllib.parse import urlparse

    database = urlparse(migrated_url)
    warehouse = f"postgres://{database.hostname}:{database.port}"
    completes = {event["job"]["name"].rsplit(".", 1)[-1]: event for event in lineage_events if event["eventType"] == "COMPLETE"}

    assert _datasets(completes["to_raw"], "inputs") == {("file", str(lake_root / "landing/vitals"))}
    assert _datasets(completes["to_raw"], "outputs") == {("file", str(lake_root / "raw/vitals"))}
    assert ("file", str(lake_root / "silver/vitals")) in _datasets(completes["to_silver"], "outputs")
    assert _datasets(completes["to_gold"], "outputs") == {("file", str(lake_root / "gold/vitals"))}
    assert _datasets(completes["load"], "outputs") == {(warehouse, f"{database.path.lstrip('/')}.kidjamo.measurements"),
                                                        (warehouse, f"{database.path.lstrip('/')}.kidjamo.quarantine")}
    assert (warehouse, f"{database.path.lstrip('/')}.kidjamo.alerts") in _datasets(completes["raise_alerts"], "outputs")
    for step, event in completes.items():
        inputs, outputs = STEP_LINEAGE[step]
        assert len(_datasets(event, "inputs")) == len(set(inputs)), step
        assert len(_datasets(event, "outputs")) == len(set(outputs)), step
