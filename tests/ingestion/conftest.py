"""Fixtures of the ingestion tests: a provisioned database and real uvicorn servers on loopback."""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from ingestion.auth import signed_headers
from ingestion.landing_writer import PART_PREFIX, _part_instance
from ingestion.simulator.fleet import Fleet, provision_fleet, read_secrets
from kidjamo.lake.storage import Lake
from tests.databases import migrated_database

KIDJAMO = str(Path(sys.executable).parent / "kidjamo")


@pytest.fixture(scope="module")
def ingest_database(postgres_server, request) -> str:
    """A migrated database for one test module (dropped afterwards)."""
    name = "ingest_" + request.module.__name__.rsplit(".", 1)[-1].lower()[:40]
    with migrated_database(postgres_server, name) as url:
        yield url


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.generate(12, seed=11)


@pytest.fixture(scope="module")
def secrets(ingest_database: str, fleet: Fleet, tmp_path_factory) -> dict[str, str]:
    """Registry imported and every device given a credential; {device_id: secret}."""
    path = tmp_path_factory.mktemp("fleet") / "secrets.json"
    provision_fleet(ingest_database, fleet, path, pseudonym_key="test-key")
    return read_secrets(path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServiceProcess:
    """``kidjamo ingest serve`` in its own process, on a loopback port."""

    home: Path
    lake: Lake
    database_url: str
    settings: dict
    environment: dict = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    log_level: str = "warning"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServiceProcess":
        self.port = self.port or _free_port()
        environment = {name: value for name, value in os.environ.items() if not name.startswith("KIDJAMO_")}
        environment.update(
            KIDJAMO_HOME=str(self.home),
            KIDJAMO_DATABASE_URL=self.database_url,
            KIDJAMO_LAKE_URL=self.lake.root_url,
            **{f"KIDJAMO_{name.upper()}": str(value) for name, value in self.settings.items()},
            **self.environment,
        )
        log = open(self.home / "service.log", "ab")
        self.process = subprocess.Popen(
            [KIDJAMO, "ingest", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", self.log_level],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}: {(self.home / 'service.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the service did not answer /healthz within 30 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def landing_files(self) -> list[str]:
        """Landing files and unpublished parts, without the parts of a minute whose file is being published.

        A temporary file (``.name.tmp``, a write not yet renamed) is not a landing file: the pipeline skips it too.
        """
        paths = [f.path for f in self.lake.list_files("landing/vitals") if not posixpath.basename(f.path).startswith(".")]
        published = set(paths)
        return [path for path in paths if not (posixpath.basename(path).startswith(PART_PREFIX) and _target_of(path) in published)]

    def landing_readings(self) -> list[dict]:
        readings = []
        for path in self.landing_files():
            readings += [json.loads(line) for line in self.lake.read_bytes(path).splitlines() if line]
        return readings


def _target_of(part: str) -> str:
    """The file a part of the writer is published into (same partition, one per instance and minute)."""
    directory, name = posixpath.split(part)
    day, hour, minute = (piece.split("=", 1)[1] for piece in directory.split("/")[2:5])
    return f"{directory}/ingest-{_part_instance(name)}-{day.replace('-', '')}T{hour}{minute}.ndjson"


@pytest.fixture(scope="module")
def start_service(ingest_database: str, secrets, tmp_path_factory):
    """Start a service with setting overrides (``rate_per_device=2`` -> KIDJAMO_INGEST_RATE_PER_DEVICE=2).

    Each service has its own home (journal) and lake; all are stopped at the end of the module.
    """
    started: list[ServiceProcess] = []

    def start(*, lake: Lake | None = None, environment: dict | None = None, **settings) -> ServiceProcess:
        home = tmp_path_factory.mktemp("service")
        service = ServiceProcess(home, lake or Lake(f"file://{home / 'lake'}"), ingest_database,
                                 {f"ingest_{name}": value for name, value in settings.items()}, environment or {})
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


def _post(service: ServiceProcess, device_id: str, secret: str, payload, *, headers: dict | None = None) -> httpx.Response:
    body = json.dumps(payload).encode()
    request_headers = {"Content-Type": "application/json", **signed_headers(device_id, secret, body, precise=True), **(headers or {})}
    return httpx.post(f"{service.url}/v1/vitals", content=body, headers=request_headers, timeout=10)


@pytest.fixture
def post():
    """``post(service, device_id, secret, payload, headers=None)``: a correctly signed POST /v1/vitals."""
    return _post


@pytest.fixture(scope="module")
def service(start_service) -> ServiceProcess:
    """A service with the default settings, shared by a test module."""
    return start_service()


_SLOTS = itertools.count(1)


@pytest.fixture
def new_reading(fleet: Fleet):
    """``new_reading(index=0, **vitals)``: a valid reading of patient ``index`` never posted before in the session."""

    def make(index: int = 0, **vitals) -> dict:
        slot_start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(seconds=30 * next(_SLOTS))
        payload = next(r for r in fleet.readings(slot_start, slot_start + timedelta(seconds=30)) if r["device_id"] == fleet.device_ids[index])
        payload["vitals"].update(vitals)
        return payload

    return make
