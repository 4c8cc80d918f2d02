"""Every DAG file imports without errors and declares what the UI shows."""

from kidjamo.airflow_env import DAGS_FOLDER


def test_every_dag_file_imports_without_errors(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert "kidjamo_vitals" in bag.dags


def test_vitals_dag_runs_every_minute_over_one_minute_intervals(airflow_home):
    from datetime import datetime, timezone

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"]
    interval = dag.timetable.infer_manual_data_interval(run_after=datetime(2026, 11, 27, 15, 32, tzinfo=timezone.utc))
    assert (interval.start.isoformat(), interval.end.isoformat()) == ("2026-11-27T15:31:00+00:00", "2026-11-27T15:32:00+00:00")
    assert dag.max_active_runs == 1
    assert dag.doc_md and all(t.doc_md for t in dag.tasks)
