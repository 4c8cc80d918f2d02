"""The ingestion service under hostile clients, on real processes: random device ids, floods of bad
credentials, non-ASCII signatures, slow sockets, and revocations that must hold in every instance.

Every service here runs as a login role of ``kidjamo_ingest`` only, so the tests also show that
intake and the critical fast path need no more than that role's rights.
"""

from __future__ import annotations

import json
import secrets as random
import socket
import threading
import time

import httpx
import psycopg
import pytest

from ingestion.auth import revoke_device, rotate_device, signed_headers
from kidjamo.lake.storage import Lake
from tests.ingestion.conftest import ServiceProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def start(ingest_login_url, secrets, tmp_path_factory):
    """``start(**settings)``: a service running as the ingest login, with setting overrides; all stopped at the end."""
    started: list[ServiceProcess] = []

    def run(**settings) -> ServiceProcess:
        home = tmp_path_factory.mktemp("hostile")
        service = ServiceProcess(home, Lake(f"file://{home / 'lake'}"), ingest_login_url,
                                 {f"ingest_{name}": value for name, value in settings.items()})
        started.append(service)
        return service.start()

    yield run
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def service(start):
    return start()


def unknown_device_post(service: ServiceProcess, device_id: str | None = None) -> httpx.Response:
    body = b'{"device_id": "x"}'
    headers = {"Content-Type": "application/json", **signed_headers(device_id or "dev-" + random.token_hex(8), "kdj_guess", body)}
    return httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers, timeout=10)


def database_activity(url: str, login: str) -> tuple[int, int]:
    """(scans of kidjamo.device_credentials so far, sessions of ``login`` now) as PostgreSQL counts them."""
    with psycopg.connect(url) as connection:
        scans = connection.execute("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                                   " WHERE relid = 'kidjamo.device_credentials'::regclass").fetchone()[0]
        sessions = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = %s",
                                      (login,)).fetchone()[0]
    return scans, sessions


def test_random_device_ids_get_401_without_touching_the_database(start, ingest_database, ingest_login_url):
    service = start(auth_failure_burst=1000)
    login = psycopg.conninfo.conninfo_to_dict(ingest_login_url)["user"]
    time.sleep(2)  # let PostgreSQL flush the statistics of the service's start (its one bulk load)
    scans_before, _ = database_activity(ingest_database, login)
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for _ in range(300):
            body = b"{}"
            response = client.post("/v1/vitals", content=body, headers={
                "Content-Type": "application/json", **signed_headers("dev-" + random.token_hex(8), "kdj_guess", body)})
            assert response.status_code == 401
    time.sleep(2)
    scans_after, sessions = database_activity(ingest_database, login)
    # The old service opened a connection and looked the id up for every request: 300 scans.
    assert scans_after - scans_before == 0
    assert sessions <= 4 + 1  # the pool (KIDJAMO_INGEST_DB_POOL_SIZE) and the credential listener


def test_an_unknown_device_is_refused_before_its_body_is_read(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as client:
        client.sendall(b"POST /v1/vitals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n"
                       b"X-Device-Id: dev-nobody\r\nX-Api-Key: kdj_guess\r\n\r\n")
        answer = client.recv(4096)  # no body sent: an answer now means the body was not awaited
    assert answer.startswith(b"HTTP/1.1 401")


@pytest.mark.parametrize("signature", ["é" * 64, "\u00ff" * 64, "ｆ" * 64])
def test_a_non_ascii_signature_gets_401_not_500(service, fleet, secrets, new_reading, signature):
    device_id = fleet.device_ids[0]
    body = json.dumps(new_reading(0)).encode()
    headers = signed_headers(device_id, secrets[device_id], body)
    headers["X-Signature"] = signature.encode("utf-8")
    response = httpx.post(f"{service.url}/v1/vitals", content=body, headers={"Content-Type": "application/json", **headers}, timeout=10)
    assert response.status_code == 401
    assert "wrong signature" in response.json()["detail"]


def test_failed_authentications_are_rate_limited_globally_and_devices_still_post(start, fleet, secrets, new_reading, post):
    service = start(auth_failure_rate=0.5, auth_failure_burst=5)
    statuses = [unknown_device_post(service).status_code for _ in range(12)]
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    limited = unknown_device_post(service)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    device_id = fleet.device_ids[1]
    assert post(service, device_id, secrets[device_id], new_reading(1)).status_code == 202


# --- slow clients ---------------------------------------------------------------------------------------
class SlowClient(threading.Thread):
    """Opens a connection and sends ``preamble`` then one byte of ``trickle`` every ``every_s`` seconds."""

    def __init__(self, port: int, preamble: bytes, trickle: bytes, every_s: float):
        super().__init__(daemon=True)
        self.port, self.preamble, self.trickle, self.every_s = port, preamble, trickle, every_s
        self.closed_after: float | None = None
        self.answer = b""

    def run(self) -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.settimeout(self.every_s)
            try:
                connection.sendall(self.preamble)
                for byte in self.trickle:
                    try:
                        chunk = connection.recv(4096)
                        self.answer += chunk
                        if not chunk:
                            break
                    except socket.timeout:
                        pass
                    connection.sendall(bytes([byte]))
            except OSError:  # reset by the server
                pass
        self.closed_after = time.monotonic() - started


def critical_alert_of(url: str, patient_id: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT rule_id, severity FROM kidjamo.alerts WHERE patient_id = %s AND status <> 'resolved'",
                                  (patient_id,)).fetchall()


def test_slow_sockets_are_cut_and_a_critical_reading_still_gets_its_202_and_alert(start, fleet, secrets, new_reading, post, ingest_database):
    service = start(header_timeout_s=2, body_timeout_s=2)
    slow_device = fleet.device_ids[2]
    slow_headers = (b"POST /v1/vitals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n"
                    b"X-Device-Id: " + slow_device.encode() + b"\r\nX-Api-Key: " + secrets[slow_device].encode() + b"\r\n\r\n")
    clients = [SlowClient(service.port, b"POST /v1/vitals HTTP/1.1\r\n", b"X-Padding: " + b"a" * 200, 0.5) for _ in range(40)]
    clients += [SlowClient(service.port, slow_headers, b"[" + b" " * 398 + b"]", 0.5) for _ in range(40)]
    for client in clients:
        client.start()
    time.sleep(0.5)

    device_id, patient_id = fleet.device_ids[3], fleet.patient_ids[3]
    started = time.monotonic()
    response = post(service, device_id, secrets[device_id], new_reading(3, spo2=80.0))
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert time.monotonic() - started < 2  # not queued behind the slow sockets
    deadline = time.monotonic() + 5
    while not critical_alert_of(ingest_database, patient_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert critical_alert_of(ingest_database, patient_id), "the fast path raised no alert"

    for client in clients:
        client.join(15)
    header_clients, body_clients = clients[:40], clients[40:]
    assert all(client.closed_after is not None and client.closed_after < 5 for client in clients)
    assert all(client.answer.startswith(b"HTTP/1.1 408") for client in header_clients)
    assert all(client.answer.startswith(b"HTTP/1.1 408") for client in body_clients)


def test_connections_above_the_concurrency_limit_are_refused_and_freed_by_the_header_deadline(start, fleet, secrets, new_reading, post):
    service = start(limit_concurrency=8, header_timeout_s=1.5)
    idle = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(12)]
    try:
        device_id = fleet.device_ids[4]
        assert post(service, device_id, secrets[device_id], new_reading(4)).status_code == 503
        time.sleep(2.5)  # the idle connections sent no header within the deadline: closed
        assert all(connection.recv(4096).startswith(b"HTTP/1.1 408") for connection in idle)
        assert post(service, device_id, secrets[device_id], new_reading(4)).status_code == 202
    finally:
        for connection in idle:
            connection.close()


# --- revocation in every instance -----------------------------------------------------------------------
def seconds_until_refused(services: list[ServiceProcess], device_id: str, secret: str, reading, post) -> float:
    """Post to every instance until each answers 401; the time it took for the slowest."""
    started, pending = time.monotonic(), list(services)
    while pending and time.monotonic() - started < 20:
        pending = [s for s in pending if post(s, device_id, secret, reading()).status_code != 401]
    return time.monotonic() - started if not pending else float("inf")


def test_a_revocation_holds_at_once_in_every_instance(start, fleet, secrets, new_reading, post, ingest_database):
    first, second = start(credential_cache_s=300), start(credential_cache_s=300)
    device_id = fleet.device_ids[5]
    for instance in (first, second):
        assert post(instance, device_id, secrets[device_id], new_reading(5)).status_code == 202
    revoke_device(ingest_database, device_id)
    assert seconds_until_refused([first, second], device_id, secrets[device_id], lambda: new_reading(5), post) < 1.0


def test_a_rotation_reaches_every_instance_at_once(start, fleet, secrets, new_reading, post, ingest_database):
    first, second = start(credential_cache_s=300), start(credential_cache_s=300)
    device_id = fleet.device_ids[6]
    new_secret = rotate_device(ingest_database, device_id)
    deadline = time.monotonic() + 1.0
    statuses = []
    while time.monotonic() < deadline:
        statuses = [post(instance, device_id, new_secret, new_reading(6)).status_code for instance in (first, second)]
        if statuses == [202, 202]:
            break
    assert statuses == [202, 202]
