"""kidjamo_reprocess and the maintenance DAGs: what the UI shows, and real runs with ``dag.test()``."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from transforms.pipeline import parse_interval

UTC = timezone.utc
FIRST_ARRIVAL = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
MINUTES = 3
PATIENTS = 4


@pytest.fixture(scope="module")
def dag_bag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import DAGS_FOLDER

    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.mark.parametrize("dag_id", ["kidjamo_reprocess", "kidjamo_maintenance", "kidjamo_maintenance_hourly"])
def test_ops_dag_imports_with_docs_owner_and_tags(dag_bag, dag_id):
    assert not [path for path in dag_bag.import_errors if "maintenance" in path or "reprocess" in path]
    dag = dag_bag.dags[dag_id]
    assert dag.doc_md and all(task.doc_md for task in dag.tasks)
    assert "kidjamo" in dag.tags and all(task.owner == "data-platform" for task in dag.tasks)
    assert dag.max_active_runs == 1 and dag.on_failure_callback


def test_reprocess_is_manual_only(dag_bag):
    dag = dag_bag.dags["kidjamo_reprocess"]
    assert dag.timetable.can_be_scheduled is False
    assert [task.task_id for task in dag.topological_sort()] == ["validate_interval", "reprocess"]


def test_maintenance_runs_daily_after_the_day_closes_and_views_hourly(dag_bag):
    assert dag_bag.dags["kidjamo_maintenance"].timetable.expression == "0 2 * * *"
    assert dag_bag.dags["kidjamo_maintenance_hourly"].timetable.expression == "5 * * * *"
    assert {task.task_id for task in dag_bag.dags["kidjamo_maintenance"].tasks} == {
        "create_partitions_ahead", "apply_retention", "recompute_baselines", "compact_lake",
        "clean_airflow_metadata", "backup_warehouse", "report_sizes"}


def test_reprocess_emits_the_same_assets_as_the_vitals_dag(dag_bag):
    vitals_outlets = {outlet for task in dag_bag.dags["kidjamo_vitals"].tasks for outlet in task.outlets}
    reprocess_outlets = set(dag_bag.dags["kidjamo_reprocess"].get_task("reprocess").outlets)
    assert reprocess_outlets and reprocess_outlets <= vitals_outlets


@pytest.mark.parametrize("value, message", [
    ("yesterday", "is not a 'date-time'"),
    ("2026-11-25T08:00:00", "is not a 'date-time'"),  # no time zone
])
def test_reprocess_trigger_form_rejects_a_value_that_is_not_a_utc_date_time(dag_bag, value, message):
    from airflow.exceptions import ParamValidationError

    params = dag_bag.dags["kidjamo_reprocess"].params
    with pytest.raises(ParamValidationError, match=message):
        params.get_param("start").resolve(value)
    assert params.get_param("start").resolve("2026-11-25T08:00:00+00:00") == "2026-11-25T08:00:00+00:00"


@pytest.mark.parametrize("start, end, message", [
    ("2026-11-25T09:00:00+00:00", "2026-11-25T08:00:00+00:00", r"end \(2026-11-25 08:00 UTC\) must be after start \(2026-11-25 09:00 UTC\)"),
    ("2026-11-25T08:00:00Z", "2026-11-25T08:00:00Z", "must be after start"),
    ("2026-11-25T08:00:30+00:00", "2026-11-25T09:00:00+00:00", "not on a minute boundary"),
    ("2026-11-25T08:00:00", "2026-11-25T09:00:00+00:00", "has no time zone"),
    ("2026-11-01T00:00:00+00:00", "2026-11-25T00:00:00+00:00", "more than 7 days"),
])
def test_reprocess_interval_errors_say_what_to_fix(start, end, message):
    with pytest.raises(ValueError, match=message):
        parse_interval(start, end)


def test_reprocess_interval_is_converted_to_utc():
    assert parse_interval("2026-11-25T09:00:00+01:00", "2026-11-25T08:03:00Z") == (
        datetime(2026, 11, 25, 8, 0, tzinfo=UTC), datetime(2026, 11, 25, 8, 3, tzinfo=UTC))


@pytest.fixture(scope="module")
def landed_minutes(migrated_url, kidjamo_home, tmp_path_factory):
    from ingestion.simulator.fleet import Fleet
    from ingestion.simulator.payloads import write_landing
    from transforms.registry import import_registry

    fleet = Fleet.generate(PATIENTS, seed=11)
    import_registry(fleet.write_registry_csv(tmp_path_factory.mktemp("registry") / "registry.csv"), migrated_url, pseudonym_key="test-key")
    lake = Lake.from_settings()
    landed = 0
    for offset in range(MINUTES):
        arrival = FIRST_ARRIVAL + timedelta(minutes=offset)
        readings = fleet.readings(arrival - timedelta(minutes=1), arrival)
        write_landing(lake, arrival, readings, name="sensors-batch")
        landed += len(readings)
    return lake, landed


def _measurements(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT count(*) FROM kidjamo.measurements WHERE arrival_minute >= %s AND arrival_minute < %s",
            (FIRST_ARRIVAL, FIRST_ARRIVAL + timedelta(minutes=MINUTES))).fetchone()[0]


@pytest.mark.slow
def test_reprocess_runs_an_interval_in_one_run_and_again_identically(dag_bag, landed_minutes, migrated_url):
    lake, landed = landed_minutes
    dag = dag_bag.dags["kidjamo_reprocess"]
    conf = {"start": FIRST_ARRIVAL.isoformat(), "end": (FIRST_ARRIVAL + timedelta(minutes=MINUTES)).isoformat()}
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    assert _measurements(migrated_url) == landed
    silver = [f for f in lake.list_files("silver/vitals") if f.path.startswith(f"silver/vitals/{minute_partition(FIRST_ARRIVAL)[:13]}")]
    assert len(silver) == MINUTES
    with psycopg.connect(migrated_url) as connection:
        steps = connection.execute("SELECT count(*) FROM kidjamo.pipeline_runs WHERE run_id = %s AND status = 'success'",
                                   (run.run_id,)).fetchone()[0]
    assert steps >= 5

    again = dag.test(run_conf=conf)
    assert again.state == "success" and _measurements(migrated_url) == landed


@pytest.mark.slow
def test_reprocess_of_an_inverted_interval_fails_before_touching_anything(dag_bag, migrated_url):
    dag = dag_bag.dags["kidjamo_reprocess"]
    run = dag.test(run_conf={"start": "2026-11-25T09:00:00+00:00", "end": "2026-11-25T08:00:00+00:00"})
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["validate_interval"] == "failed" and states["reprocess"] == "upstream_failed"


@pytest.mark.slow
def test_maintenance_run_succeeds_and_cleans_airflow_metadata(dag_bag, airflow_home, migrated_url, monkeypatch):
    import json

    metadata_url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_METADATA", json.dumps({"conn_type": "generic", "extra": {"sql_alchemy_conn": metadata_url}}))
    run = dag_bag.dags["kidjamo_maintenance"].test(logical_date=datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert set(states.values()) == {"success"}
    with psycopg.connect(migrated_url) as connection:
        partitions = {row[0] for row in connection.execute(
            "SELECT relname FROM pg_class WHERE relname IN ('measurements_20261126', 'measurements_20261203') AND relkind = 'r'")}
    assert partitions == {"measurements_20261126", "measurements_20261203"}


@pytest.mark.slow
def test_maintenance_skips_airflow_db_clean_without_its_connection(dag_bag, airflow_home, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_METADATA", raising=False)
    run = dag_bag.dags["kidjamo_maintenance"].test(logical_date=datetime(2026, 11, 27, 2, 0, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["clean_airflow_metadata"] == "skipped" and states["report_sizes"] == "success"
