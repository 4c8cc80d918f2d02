"""Fixtures of the care-team app tests: a warehouse with two care teams fed by the real pipeline,
their clinicians, and the app served by uvicorn on a free port (a real HTTP server)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from care.app import create_app
from care.auth import provision_clinician
from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.settings import Settings
from kidjamo.lake.storage import Lake
from transforms.pipeline import process_interval
from kidjamo.warehouse.roles import AUTHENTICATOR
from tests.security.support import drop_logins, login_url, set_test_password
from transforms.registry import import_registry

TEAMS = ["team-a", "team-a", "team-b", "team-b"]
PASSWORD = "correct horse battery"
CLINICIANS = {"care_alice": ["team-a"], "care_bob": ["team-b"]}
PSEUDONYM_KEY = "care-tests-pseudonym-key-0123456789abcdef"  # >= 32 bytes, as with any external database


@dataclass
class CareWard:
    """A warehouse with four patients (two per team) and the minutes already run through the pipeline."""

    url: str
    app_url: str  # the app's own login: kidjamo_authenticator
    lake: Lake
    fleet: Fleet
    settings: Settings
    last_arrival: datetime

    @property
    def team_a(self) -> list[str]:
        return [p for p, team in zip(self.fleet.patient_ids, TEAMS) if team == "team-a"]

    @property
    def team_b(self) -> list[str]:
        return [p for p, team in zip(self.fleet.patient_ids, TEAMS) if team == "team-b"]

    def run_minute(self, *, hypoxia: bool = False, history_minutes: int = 1) -> dict:
        """Land the readings of the ``history_minutes`` before the current minute and run that arrival minute through the pipeline."""
        arrival = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        if arrival <= self.last_arrival:
            arrival = self.last_arrival + timedelta(minutes=1)
        readings = self.fleet.readings(arrival - timedelta(minutes=history_minutes), arrival, hypoxia_patient=hypoxia)
        write_landing(self.lake, arrival, readings, name=f"care-{arrival:%H%M}")
        self.last_arrival = arrival
        return process_interval(arrival, arrival + timedelta(minutes=1), lake=self.lake, database_url=self.url,
                                run_id=f"care-{arrival:%Y%m%dT%H%M}", settings=self.settings)

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url) as connection:
            return connection.execute(statement, params).fetchall()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ward(postgres_server, tmp_path_factory, request) -> CareWard:
    from tests.databases import migrated_database

    name = "t_care_" + request.module.__name__.rsplit(".", 1)[-1][:40]
    home = tmp_path_factory.mktemp("care-home")
    with migrated_database(postgres_server, name) as url:
        fleet = Fleet.generate(len(TEAMS), seed=7)
        fleet.care_teams[:] = TEAMS
        import_registry(fleet.write_registry_csv(home / "registry.csv"), url, pseudonym_key=PSEUDONYM_KEY)
        with psycopg.connect(url) as connection:
            for login, teams in CLINICIANS.items():
                provision_clinician(connection, login, teams, PASSWORD)
            set_test_password(connection, AUTHENTICATOR)
        settings = Settings(home=home, database_url=url, pseudonym_key=PSEUDONYM_KEY, care_cookie_secure=False,
                            care_refresh_seconds=1.0)
        ward = CareWard(url, login_url(url, AUTHENTICATOR), Lake(f"file://{home / 'lake'}"), fleet, settings, datetime(2000, 1, 1, tzinfo=timezone.utc))
        ward.run_minute(history_minutes=90)  # an hour and a half of history: trends and charts
        try:
            yield ward
        finally:
            drop_logins(url, CLINICIANS)


class Served:
    """A uvicorn server in a thread; ``stop()`` asks it to exit and waits."""

    def __init__(self, app, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{port}"

    def start(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the care-team app did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def care_app(ward):
    served = Served(create_app(ward.app_url, ward.settings), free_port()).start()
    yield served
    served.stop()


def log_in(base_url: str, login: str, password: str = PASSWORD) -> httpx.Client:
    """An HTTP client with a session of ``login`` (through the login form, as a browser does)."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    form = client.get("/login")
    token = form.cookies.get("kidjamo_care_login") or client.cookies.get("kidjamo_care_login")
    response = client.post("/login", data={"login": login, "password": password, "csrf_token": token})
    assert response.status_code == 303, response.text
    return client


def csrf_of(page_html: str) -> str:
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', page_html).group(1)


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "care"
