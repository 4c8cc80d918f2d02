"""kidjamo_vitals with KIDJAMO_SHARDS=2 under real Airflow: the steps are mapped over the shards and the
run ends with the warehouse and lake an in-process one-shard run gives for the same landed minute."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.storage import Lake
from tests.databases import migrated_database
from tests.layers.helpers import land
from tests.layers.test_shards import FIRST, _lake_rows, _minute, _registry_csv, _warehouse
from transforms.pipeline import process_interval
from transforms.registry import import_registry

MAPPED = {"bronze.to_bronze", "bronze.gate_bronze", "silver.to_silver", "silver.gate_silver", "gold.to_gold",
          "warehouse.load", "alerts.raise_alerts"}


def _sharded_dag(monkeypatch, shards: int):
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import DAGS_FOLDER

    monkeypatch.setenv("KIDJAMO_SHARDS", str(shards))
    return DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"]


def test_with_two_shards_the_steps_after_raw_are_mapped_and_joined_steps_wait_for_every_shard(airflow_home, monkeypatch):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = _sharded_dag(monkeypatch, 2)
    tasks = {task.task_id: task for task in dag.tasks}
    assert {task_id for task_id, task in tasks.items() if isinstance(task, MappedOperator)} == MAPPED
    assert all(tasks[task_id].partial_kwargs["op_kwargs"] == {"shards": 2} for task_id in MAPPED)
    upstream = {task_id: task.upstream_task_ids for task_id, task in tasks.items()}
    assert upstream["silver.accounting"] == {"silver.gate_silver"}
    assert upstream["warehouse.load"] == upstream["gold.to_gold"] == upstream["alerts.raise_alerts"] == {"silver.accounting"}
    assert upstream["alerts.alerts_sweep"] == {"alerts.raise_alerts"}
    assert upstream["warehouse.refresh_views"] == {"warehouse.load"}


@pytest.mark.slow
def test_a_two_shard_airflow_run_ends_with_the_warehouse_of_a_one_shard_run(airflow_home, postgres_server, monkeypatch,
                                                                               tmp_path):
    fleet = Fleet.generate(16, seed=13)
    registry_csv, second_device = _registry_csv(fleet, tmp_path / "registry.csv")
    files = _minute(fleet, FIRST, second_device, earlier=[])
    end = FIRST + timedelta(minutes=1)
    states = {}
    with migrated_database(postgres_server, "t_shards_airflow") as airflow_url, \
            migrated_database(postgres_server, "t_shards_inprocess") as inprocess_url:
        for url, name in ((airflow_url, "airflow"), (inprocess_url, "inprocess")):
            import_registry(registry_csv, url, pseudonym_key="test-key")
            lake = Lake(f"file://{tmp_path / name}")
            for index, lines in enumerate(files):
                land(lake, f"sensors-{index}.ndjson", lines, minute=FIRST)
        process_interval(FIRST, end, lake=Lake(f"file://{tmp_path / 'inprocess'}"), database_url=inprocess_url,
                         run_id="inprocess", shards=1)

        monkeypatch.setenv("AIRFLOW_CONN_KIDJAMO_POSTGRES", airflow_url)
        monkeypatch.setenv("KIDJAMO_LAKE_URL", f"file://{tmp_path / 'airflow'}")
        dag = _sharded_dag(monkeypatch, 2)
        run = dag.test(logical_date=end)
        assert run.state == "success"
        instances = run.get_task_instances()
        mapped = {(ti.task_id, ti.map_index) for ti in instances if ti.map_index >= 0}
        assert mapped == {(task_id, shard) for task_id in MAPPED for shard in (0, 1)}
        assert all(ti.state == "success" for ti in instances)

        run_ids = {"airflow": run.run_id, "inprocess": "inprocess"}
        for url, name in ((airflow_url, "airflow"), (inprocess_url, "inprocess")):
            states[name] = {"warehouse": {table: _without_run_id(frame, run_ids[name])
                                          for table, frame in _warehouse(url).items()},
                            "lake": {key: _without_run_id(frame, run_ids[name])
                                     for key, frame in _lake_rows(Lake(f"file://{tmp_path / name}")).items()}}

    for part in ("warehouse", "lake"):
        one, two = states["inprocess"][part], states["airflow"][part]
        assert one.keys() == two.keys()
        for key in one:
            pd.testing.assert_frame_equal(one[key], two[key], obj=str(key))
    assert len(states["inprocess"]["warehouse"]["measurements"]) > 16
    assert (states["airflow"]["warehouse"]["alerts"]["rule_id"] == "hypoxia_emergency").any()


def _without_run_id(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """The rows with their run's id (in run_id columns and alert event details) written RUN."""
    return frame.map(lambda value: value.replace(run_id, "RUN") if isinstance(value, str) else value)
