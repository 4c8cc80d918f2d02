"""Fast-path alerts are notified and escalated by their own DAG while the minute batch is failing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expectations.gate import GateFailed
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from tests.layers.helpers import land, payload
from transforms.alerts.fast_path import raise_fast_path_alert
from transforms.clinical.rules import default_rules
from transforms.pipeline import Interval, step_gate_bronze, step_to_bronze, step_to_raw

pytestmark = pytest.mark.slow

PATIENT, DEVICE = "noloss-patient-1", "noloss-device-1"


@pytest.fixture
def registered(migrated_url):
    with psycopg.connect(migrated_url) as connection:
        connection.execute(
            "INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype, care_team) VALUES (%s, '2015-03-01', 'F', 'HbSS', 'team-a')"
            " ON CONFLICT DO NOTHING", (PATIENT,))
        connection.execute("INSERT INTO kidjamo.devices (device_id, patient_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                           (DEVICE, PATIENT))
    return migrated_url


def _notifications(url: str, alert_id: int) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT e.event_type, e.audience, n.status FROM kidjamo.alert_events AS e"
            " JOIN kidjamo.notifications AS n USING (event_id) WHERE e.alert_id = %s ORDER BY e.event_id, n.channel",
            (alert_id,)).fetchall()


def test_a_fast_path_alert_is_notified_and_escalated_while_the_bronze_gate_fails(airflow_home, registered, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    from kidjamo.cli.airflow_env import DAGS_FOLDER

    now = datetime.now(timezone.utc)
    arrival = now.replace(second=0, microsecond=0)
    reading = payload(1, device_id=DEVICE, patient_id=PATIENT, message_id="noloss-critical",
                      timestamp=now.isoformat().replace("+00:00", "Z"), vitals__spo2=82.0)

    # The batch of that minute fails its bronze gate (broken lineage: rows of another arrival minute) ...
    lake = Lake(f"file://{tmp_path / 'lake'}")
    land(lake, "batch.ndjson", [reading], minute=arrival)
    interval = Interval.for_task(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=registered, run_id="failing-run")
    step_to_raw(interval)
    step_to_bronze(interval)
    bronze_path = lake.local_path(f"bronze/vitals/{minute_partition(arrival)}/part-0.parquet")
    bronze = pq.read_table(bronze_path)
    wrong_minute = pa.array([arrival - timedelta(days=1)] * bronze.num_rows, bronze.schema.field("arrival_minute").type)
    pq.write_table(bronze.set_column(bronze.schema.get_field_index("arrival_minute"), "arrival_minute", wrong_minute), bronze_path)
    with pytest.raises(GateFailed, match="arrival_minute"):
        step_gate_bronze(interval)

    # ... while the ingestion service had already raised the critical alert on the fast path.
    alert_id = raise_fast_path_alert(registered, reading, received_at=now, rules=default_rules())
    assert alert_id is not None
    assert _notifications(registered, alert_id) == [("opened", "care_team", "pending")]

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["kidjamo_notifications"]
    first = arrival + timedelta(minutes=2)
    assert dag.test(logical_date=first).state == "success"
    assert _notifications(registered, alert_id) == [("opened", "care_team", "sent")]

    assert dag.test(logical_date=first + timedelta(minutes=6)).state == "success"  # still unacknowledged
    assert _notifications(registered, alert_id) == [("opened", "care_team", "sent"),
                                                    ("escalation_notice", "escalation", "sent")]
