"""Every DAG file imports without errors and declares what the UI shows."""

from kidjamo.cli.airflow_env import DAGS_FOLDER


def test_every_dag_file_imports_without_errors(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert "kidjamo_vitals" in bag.dags


def test_vitals_dag_runs_every_minute_over_one_minute_intervals(airflow_home):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import CronDataIntervalTimetable

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"]
    # A data-interval timetable: each run covers [previous minute, this minute), not a zero-length instant.
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "* * * * *"
    assert dag.max_active_runs == 1
    assert dag.doc_md and all(task.doc_md for task in dag.tasks)


def test_vitals_tasks_run_in_pipeline_order(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"]
    upstream = {task.task_id: task.upstream_task_ids for task in dag.tasks}
    assert upstream == {
        "raw.to_raw": set(),
        "bronze.to_bronze": {"raw.to_raw"},
        "bronze.gate_bronze": {"bronze.to_bronze"},
        "silver.to_silver": {"bronze.gate_bronze"},
        "silver.gate_silver": {"silver.to_silver"},
        "gold.to_gold": {"silver.gate_silver"},
        "warehouse.load": {"silver.gate_silver"},
        "warehouse.refresh_views": {"warehouse.load"},
        "alerts.raise_alerts": {"silver.gate_silver"},
    }


def test_warehouse_writers_share_a_pool_that_the_set_up_creates(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import PROJECT_ROOT, pool_commands
    from plugins.pools import WAREHOUSE

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    pooled = {(dag_id, task.task_id) for dag_id in ("kidjamo_vitals", "kidjamo_reprocess")
              for task in bag.dags[dag_id].tasks if task.pool == WAREHOUSE.name}
    assert pooled == {("kidjamo_vitals", "warehouse.load"), ("kidjamo_vitals", "warehouse.refresh_views"),
                      ("kidjamo_vitals", "alerts.raise_alerts"), ("kidjamo_reprocess", "reprocess")}
    assert ["airflow", "pools", "set", WAREHOUSE.name, str(WAREHOUSE.slots)] in [command[:5] for command in pool_commands("airflow")]
    # The compose file cannot import the constant: it must create the same pool with the same slots.
    assert f"airflow pools set {WAREHOUSE.name} {WAREHOUSE.slots} " in (PROJECT_ROOT / "docker-compose.airflow.yml").read_text()
