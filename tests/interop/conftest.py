"""A simulated day for the interoperability tests: three patients, 24 hours of readings through the pipeline.

Patient 1 has an hour of hypoxia (alerts, notifications), patient 2 twenty minutes of malformed
payloads (quarantine), patient 3 a minute whose readings carry no respiratory rate. The day is
landed minute by minute and processed in one ``process_interval`` call, into its own database and
lake, once per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from ingestion.simulator.fleet import Fleet, Scenario
from ingestion.simulator.payloads import landing_ndjson, landing_path, payloads_from_table, table_ndjson
from kidjamo.lake.storage import Lake
from tests.databases import migrated_database
from transforms.pipeline import process_interval
from transforms.registry import import_registry

DAY = datetime(2026, 11, 26, tzinfo=timezone.utc)
HYPOXIA = (DAY + timedelta(hours=10), DAY + timedelta(hours=11))
MALFORMED = (DAY + timedelta(hours=5), DAY + timedelta(hours=5, minutes=20))
NO_RESPIRATORY_RATE_MINUTE = DAY + timedelta(hours=3)
PSEUDONYM_KEY = "interop-test-key"


@dataclass(frozen=True)
class SimulatedDay:
    database_url: str
    lake: Lake
    fleet: Fleet
    patient_ids: list[str]  # hypoxic, malformed, without respiratory rate for a minute
    readings: int


@pytest.fixture(scope="session")
def simulated_day(postgres_server, tmp_path_factory) -> SimulatedDay:
    with migrated_database(postgres_server, "interop_day") as url:
        fleet = Fleet.generate(3, seed=5)
        import_registry(fleet.write_registry_csv(tmp_path_factory.mktemp("registry") / "registry.csv"), url, pseudonym_key=PSEUDONYM_KEY)
        lake = Lake(f"file://{tmp_path_factory.mktemp('day') / 'lake'}")
        hypoxic, malformed, quiet = fleet.patient_ids[:3]
        table = fleet.readings_table(DAY, DAY + timedelta(days=1), scenarios=[
            Scenario("hypoxia", hypoxic, *HYPOXIA), Scenario("malformed", malformed, *MALFORMED)])
        minute_of = (table["epoch"] - int(DAY.timestamp())) // 60
        for minute in range(24 * 60):
            rows = {name: values[minute_of == minute] for name, values in table.items()}
            arrival = DAY + timedelta(minutes=minute + 1)
            if arrival - timedelta(minutes=1) == NO_RESPIRATORY_RATE_MINUTE:
                payloads = payloads_from_table(fleet, rows)
                for payload in payloads:
                    if payload["patient_id"] == quiet:
                        del payload["vitals"]["respiratory_rate"]
                body = landing_ndjson(payloads)
            else:
                body = table_ndjson(fleet, rows)
            lake.write_bytes(landing_path(arrival, "simulator"), body)
        process_interval(DAY, DAY + timedelta(days=1), lake=lake, database_url=url, run_id="interop-day",
                         chunk=timedelta(days=1))
        yield SimulatedDay(url, lake, fleet, [hypoxic, malformed, quiet], len(table["patient"]))
