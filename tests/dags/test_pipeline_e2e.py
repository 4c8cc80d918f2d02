"""One simulated minute, including a hypoxia episode, through the real DAG on real components.

Airflow runs the DAG with ``dag.test()`` on a migrated metadata database; the lake is local; the
warehouse is the session's embedded PostgreSQL; the gates are real Great Expectations suites.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from transforms.registry import import_registry

ARRIVAL = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
RUN_AFTER = ARRIVAL + timedelta(minutes=1)  # `airflow dags test kidjamo_vitals 15:32` covers arrival minute 15:31
PATIENTS = 8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vitals_dag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import DAGS_FOLDER

    return DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_vitals"]


@pytest.fixture(scope="module")
def landed_minute(migrated_url, kidjamo_home, tmp_path_factory):
    fleet = Fleet.generate(PATIENTS, seed=7)
    registry_csv = fleet.write_registry_csv(tmp_path_factory.mktemp("registry") / "registry.csv")
    import_registry(registry_csv, migrated_url, pseudonym_key="test-key")
    lake = Lake.from_settings()
    readings = fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL, hypoxia_patient=True)
    write_landing(lake, ARRIVAL, readings, name="sensors-batch")
    return fleet, lake, readings


def _rows(lake: Lake, layer: str) -> int:
    import pyarrow.parquet as pq

    files = [f.path for f in lake.list_files(f"{layer}/vitals/{minute_partition(ARRIVAL)}") if f.path.endswith("part-0.parquet")]
    return sum(pq.read_metadata(lake.local_path(path)).num_rows for path in files)


def _warehouse_state(url: str) -> dict:
    with psycopg.connect(url) as connection:
        return {
            "measurements": connection.execute(
                "SELECT count(*) FROM kidjamo.measurements WHERE arrival_minute = %s", (ARRIVAL,)).fetchone()[0],
            "critical_alerts": connection.execute(
                # The simulated fleet's patients (other tests of the session share this database).
                "SELECT patient_id, rule_id FROM kidjamo.alerts WHERE severity = 'critical' AND patient_id LIKE 'patient-%'"
                " ORDER BY 1, 2").fetchall(),
            "alerts": connection.execute("SELECT count(*) FROM kidjamo.alerts").fetchone()[0],
            "devices_seen_in_view": connection.execute(
                "SELECT count(*) FROM analytics.device_health WHERE last_reading_at IS NOT NULL").fetchone()[0],
        }


def test_one_minute_travels_landing_to_alert_and_reruns_identically(vitals_dag, landed_minute, migrated_url):
    fleet, lake, readings = landed_minute
    run = vitals_dag.test(logical_date=RUN_AFTER)
    assert run.state == "success"

    layers = {layer: _rows(lake, layer) for layer in ("bronze", "silver", "gold")}
    assert layers["bronze"] == layers["silver"] == len(readings) == 2 * PATIENTS
    assert layers["gold"] >= PATIENTS
    assert lake.list_files(f"landing/vitals/{minute_partition(ARRIVAL)}") == []
    state = _warehouse_state(migrated_url)
    assert state["measurements"] == len(readings)
    assert state["devices_seen_in_view"] == PATIENTS
    hypoxic_patient = fleet.registry_rows()[0]["patient_id"]
    assert (hypoxic_patient, "hypoxia_emergency") in state["critical_alerts"]
    assert {patient for patient, _ in state["critical_alerts"]} == {hypoxic_patient}

    rerun = vitals_dag.test(logical_date=RUN_AFTER)
    assert rerun.state == "success"
    assert {layer: _rows(lake, layer) for layer in ("bronze", "silver", "gold")} == layers
    assert _warehouse_state(migrated_url) == state
