"""The FHIR export and the DuckDB views on an S3 lake: a real SeaweedFS server, through kidjamo/storage.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.duckdb import connect_lake
from kidjamo.lake.storage import Lake
from tests.layers.helpers import ARRIVAL
from tests.lake.test_s3_lake import s3_endpoint  # noqa: F401 - the SeaweedFS fixture
from transforms.fhir.export import export_bulk, read_export
from transforms.fhir.profile import resource_problems
from transforms.pipeline import process_interval
from transforms.registry import import_registry

pytestmark = pytest.mark.slow
MINUTES = 3


@pytest.fixture(scope="module")
def s3_lake(s3_endpoint, postgres_server, tmp_path_factory):  # noqa: F811
    from tests.databases import migrated_database

    with migrated_database(postgres_server, "interop_s3") as url:
        lake = Lake("s3://kidjamo-lake/interop", s3_endpoint_url=s3_endpoint)
        fleet = Fleet.generate(2, seed=9)
        import_registry(fleet.write_registry_csv(tmp_path_factory.mktemp("registry") / "registry.csv"), url, pseudonym_key="test-key")
        start = ARRIVAL - timedelta(minutes=MINUTES - 1)
        for minute in range(MINUTES):
            arrival = start + timedelta(minutes=minute)
            write_landing(lake, arrival, fleet.readings(arrival - timedelta(minutes=1), arrival), name="s3-interop")
        process_interval(start, ARRIVAL + timedelta(minutes=1), lake=lake, database_url=url, run_id="s3-interop")
        yield lake, url, start


def test_fhir_export_writes_ndjson_and_manifest_to_the_s3_lake(s3_lake):
    lake, url, start = s3_lake
    result = export_bulk(lake, url, since=start, until=datetime.now(timezone.utc))
    assert all(output["url"].startswith("s3://kidjamo-lake/interop/exports/fhir/") for output in result["manifest"]["output"])
    manifest, resources = read_export(lake, result["export"])
    assert manifest["output"] == result["manifest"]["output"]
    observations = resources["Observation"]
    assert len(observations) == 2 * MINUTES * 5
    assert [r for items in resources.values() for r in items if resource_problems(r)] == []


def test_duckdb_views_read_silver_and_gold_on_s3(s3_lake):
    lake, _, _ = s3_lake
    connection = connect_lake(lake)
    assert connection.execute("SELECT count(*) FROM silver").fetchone()[0] == 2 * 2 * MINUTES
    assert connection.execute("SELECT count(DISTINCT patient_id), count(*) FROM gold").fetchone() == (2, 2 * MINUTES)
