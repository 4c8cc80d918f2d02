"""Landing is a backlog that every minute run drains: minutes Airflow skipped are never left behind."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from ingestion.simulator.payloads import write_landing
from kidjamo.lake.manifest import read_manifest
from kidjamo.lake.landing import landing_backlog
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, registered_fleet
from transforms.pipeline import STEPS, Interval, check_accounting


def test_the_backlog_counts_files_of_ended_minutes_and_the_oldest_ones_age(lake):
    land(lake, "old.ndjson", [payload(1)], minute=ARRIVAL - timedelta(minutes=4))
    land(lake, "recent.ndjson", [payload(2)], minute=ARRIVAL - timedelta(minutes=1))
    land(lake, "_ingest-x-0000001.ndjson", [payload(3)], minute=ARRIVAL - timedelta(minutes=2))
    land(lake, "current.ndjson", [payload(4)], minute=ARRIVAL)  # its minute is still open: not waiting
    backlog = landing_backlog(lake, ARRIVAL + timedelta(seconds=30))
    assert (backlog.files, backlog.unpublished_parts) == (2, 1)
    assert backlog.oldest_minute == ARRIVAL - timedelta(minutes=4)
    assert backlog.oldest_age_s == 3 * 60 + 30


def test_an_empty_landing_has_no_backlog(lake):
    backlog = landing_backlog(lake, ARRIVAL)
    assert (backlog.files, backlog.oldest_minute, backlog.oldest_age_s) == (0, None, 0.0)


@pytest.fixture
def fleet(fresh_database_url, tmp_path):
    return registered_fleet(fresh_database_url, tmp_path, 3, seed=4)


def test_a_minute_run_takes_the_landing_files_of_minutes_no_run_processed(lake, fleet, fresh_database_url):
    landed = 0
    for back in (3, 2, 1, 0):  # three skipped minutes, then the run's own
        minute = ARRIVAL - timedelta(minutes=back)
        readings = fleet.readings(minute - timedelta(minutes=1), minute)
        land(lake, f"batch-{back}.ndjson", [json.dumps(r) for r in readings], minute=minute)
        landed += len(readings)
    interval = Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=fresh_database_url, run_id="minute-run", drain_landing_backlog=True)
    counts = {step.__name__: step(interval) for step in STEPS}
    assert counts["step_to_raw"]["backlog_files"] == 3
    assert lake.list_files("landing/vitals") == []
    assert landing_backlog(lake, NEXT).files == 0
    accounting = check_accounting(interval)
    assert accounting["raw_records"] == accounting["silver"] == landed
    expected = {f"backlog-{ARRIVAL - timedelta(minutes=back):%Y%m%dT%H%M}-batch-{back}.ndjson" for back in (1, 2, 3)}
    assert expected < set(read_manifest(lake, ARRIVAL))  # the original arrival minute stays in the lineage


def test_a_re_process_of_an_old_interval_leaves_the_current_backlog_alone(lake, fleet, fresh_database_url):
    land(lake, "waiting.ndjson", [json.dumps(r) for r in fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL)], minute=ARRIVAL)
    old = ARRIVAL - timedelta(days=1)
    step_to_raw = STEPS[0]
    step_to_raw(Interval.for_task(old, old + timedelta(minutes=1), lake=lake, database_url=fresh_database_url, run_id="reprocess"))
    assert [f.path.rsplit("/", 1)[1] for f in lake.list_files("landing/vitals")] == ["waiting.ndjson"]


SKIPPED_ARRIVAL = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


@pytest.mark.slow
def test_the_minute_dag_processes_the_minutes_airflow_skipped(airflow_home, migrated_url, tmp_path):
    """catchup=False skips minutes when the scheduler was down: the next run still takes their files."""
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import DAGS_FOLDER

    fleet = registered_fleet(migrated_url, tmp_path, 3, seed=21)
    lake = Lake.from_settings()
    landed = 0
    for back in (3, 2, 1, 0):
        minute = SKIPPED_ARRIVAL - timedelta(minutes=back)
        readings = fleet.readings(minute - timedelta(minutes=1), minute)
        write_landing(lake, minute, readings, name=f"skipped-{back}")
        landed += len(readings)
    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"]
    run = dag.test(logical_date=SKIPPED_ARRIVAL + timedelta(minutes=1))
    assert run.state == "success"
    assert [f.path for f in lake.list_files("landing/vitals") if f.path < f"landing/vitals/{minute_partition(SKIPPED_ARRIVAL)}"] == []
    with psycopg.connect(migrated_url) as connection:
        loaded = connection.execute("SELECT count(*) FROM kidjamo.measurements WHERE device_id = ANY(%s) AND arrival_minute = %s",
                                    (fleet.device_ids, SKIPPED_ARRIVAL)).fetchone()[0]
    assert loaded == landed
