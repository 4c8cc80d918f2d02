"""The same pipeline code on S3: a real SeaweedFS server (``weed mini``) started by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import boto3
import psycopg
import pytest

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.warehouse.embedded_pg import free_port
from kidjamo.lake.storage import Lake
from transforms.pipeline import process_interval
from transforms.registry import import_registry
from tests.layers.helpers import ARRIVAL

ACCESS_KEY, SECRET_KEY = "kidjamo-test", "kidjamo-test-secret"


def _free_port_below(limit: int = 50000) -> int:
    """A free port whose +10000 gRPC companion SeaweedFS derives is a valid port too."""
    while True:
        port = free_port()
        if port < limit:
            return port


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    weed = shutil.which("weed", path=str(Path(sys.executable).parent))
    data = tmp_path_factory.mktemp("seaweedfs")
    ports = {name: _free_port_below() for name in ("s3", "master", "volume", "filer", "admin")}
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    server = subprocess.Popen(
        [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={ports['s3']}",
         f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
         f"-admin.port={ports['admin']}", "-webdav=false"],
        env=environment, stdout=open(data / "weed.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="kidjamo-lake")
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"SeaweedFS did not start: {(data / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    yield endpoint
    os.killpg(server.pid, 15)
    server.wait(timeout=30)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name, None)


def test_pipeline_runs_on_s3_and_replays_from_raw(s3_endpoint, fresh_database_url, tmp_path):
    lake = Lake("s3://kidjamo-lake/vitals-test", s3_endpoint_url=s3_endpoint)
    fleet = Fleet.generate(3, seed=5)
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), fresh_database_url, pseudonym_key="test-key")
    readings = fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL)
    landed = write_landing(lake, ARRIVAL, readings, name="s3-batch", compress=True)
    assert lake.uri(landed).startswith("s3://kidjamo-lake/vitals-test/landing/vitals/dt=2026-11-27/hh=15/mm=31/")

    end = ARRIVAL + timedelta(minutes=1)
    first = process_interval(ARRIVAL, end, lake=lake, database_url=fresh_database_url, run_id="s3-1")
    assert first["to_raw"]["files_copied"] == 1 and first["to_silver"]["silver_rows"] == len(readings)
    assert not lake.exists(landed)
    layers = {layer: [f.path for f in lake.list_files(layer)] for layer in ("raw", "bronze", "silver", "gold")}
    assert all(layers.values())
    assert any(path.endswith("s3-batch.ndjson.gz") for path in layers["raw"])

    replay = process_interval(ARRIVAL, end, lake=lake, database_url=fresh_database_url, run_id="s3-2")
    assert replay["to_raw"]["raw_records"] == len(readings) and replay["to_raw"]["files_copied"] == 0
    assert replay["load"]["measurements"]["inserted"] == 0
    with psycopg.connect(fresh_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0] == len(readings)
