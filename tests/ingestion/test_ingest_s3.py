"""The service on an S3 lake (a real S3-compatible server, moto's, on loopback): parts and minute files are PUTs."""

from __future__ import annotations

import posixpath
import socket

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from kidjamo.lake.storage import Lake

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "kidjamo-test", "AWS_SECRET_ACCESS_KEY": "kidjamo-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_lake(monkeypatch_module):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in CREDENTIALS.items():
        monkeypatch_module.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="kidjamo-ingest")
    yield Lake("s3://kidjamo-ingest/lake", s3_endpoint_url=endpoint), endpoint
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_readings_acknowledged_on_s3_are_published_as_one_file(start_service, post, new_reading, fleet, secrets, s3_lake):
    lake, endpoint = s3_lake
    service = start_service(lake=lake, environment={**CREDENTIALS, "KIDJAMO_S3_ENDPOINT_URL": endpoint})
    payloads = [new_reading(i) for i in range(4)]
    for index, payload in enumerate(payloads):
        assert post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], payload).status_code == 202
    assert any(posixpath.basename(f.path).startswith("_ingest-") for f in lake.list_files("landing/vitals"))
    assert httpx.get(f"{service.url}/readyz").status_code == 200
    service.stop()
    files = [f.path for f in lake.list_files("landing/vitals")]
    assert files and all(posixpath.basename(path).startswith("ingest-") for path in files)
    assert sorted(r["message_id"] for r in service.landing_readings()) == sorted(p["message_id"] for p in payloads)
