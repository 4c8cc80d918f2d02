"""GET /fhir/... on the ingestion service's host, over real HTTP: bearer tokens of care systems, care-team
scoping, OperationOutcome errors, and an audit row per read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from kidjamo.warehouse.embedded_pg import free_port
from tests.interop.conftest import HYPOXIA
from transforms.fhir import resources as fhir
from transforms.fhir.clients import add_client, revoke_client
from transforms.fhir.profile import resource_problems

pytestmark = pytest.mark.slow
KIDJAMO = str(Path(sys.executable).parent / "kidjamo")


@pytest.fixture(scope="module")
def care_teams(simulated_day) -> dict[str, str]:
    with psycopg.connect(simulated_day.database_url) as connection:
        return dict(connection.execute("SELECT patient_id, care_team FROM kidjamo.patients").fetchall())


@pytest.fixture(scope="module")
def environment(simulated_day, tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("fhir-service")
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KIDJAMO_")},
            "KIDJAMO_HOME": str(home), "KIDJAMO_DATABASE_URL": simulated_day.database_url,
            "KIDJAMO_LAKE_URL": f"file://{home / 'lake'}"}


@pytest.fixture(scope="module")
def server(environment) -> str:
    """``kidjamo ingest serve`` in its own process on a loopback port; its base URL."""
    port = free_port()
    log = open(Path(environment["KIDJAMO_HOME"]) / "service.log", "ab")
    process = subprocess.Popen([KIDJAMO, "ingest", "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                               env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the service did not start: {(Path(environment['KIDJAMO_HOME']) / 'service.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(20)


@pytest.fixture(scope="module")
def token(simulated_day, care_teams, environment) -> str:
    """A token for the hypoxic patient's care team, made with the CLI as an operator would."""
    team = care_teams[simulated_day.patient_ids[0]]
    made = subprocess.run([KIDJAMO, "fhir", "clients", "add", "ward-ehr", "--care-team", team, "--description", "test EHR"],
                          env=environment, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _everything(server: str, patient_id: str, token: str | None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"start": HYPOXIA[0].isoformat(), "end": HYPOXIA[1].isoformat(), **params}
    return httpx.get(f"{server}/fhir/Patient/{patient_id}/$everything", params=params, headers=headers, timeout=60)


def test_without_a_token_the_read_is_refused_with_401_and_a_bearer_challenge(server, simulated_day):
    response = _everything(server, simulated_day.patient_ids[0], None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "entry" not in response.text


def test_an_unknown_token_is_refused_with_401(server, simulated_day):
    response = _everything(server, simulated_day.patient_ids[0], "kfc_not-a-real-token")
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_care_system_reads_everything_on_its_patient_as_a_valid_bundle(server, simulated_day, token):
    patient = simulated_day.patient_ids[0]
    response = _everything(server, patient, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"])
    resources = [entry["resource"] for entry in bundle["entry"]]
    assert [r for r in resources if resource_problems(r)] == []
    kinds = {}
    for resource in resources:
        kinds.setdefault(resource["resourceType"], []).append(resource)
    assert [p["id"] for p in kinds["Patient"]] == [patient]
    assert len(kinds["Observation"]) == 60 * len(fhir.VITAL_SIGNS)  # one per vital and minute of the hour
    assert {flag["code"]["coding"][0]["code"] for flag in kinds["Flag"]} >= {"hypoxia_emergency"}
    assert bundle["entry"][0]["fullUrl"] == f"{server}/fhir/Patient/{patient}"


def test_reading_granularity_returns_one_observation_per_vital_and_reading(server, simulated_day, token):
    response = _everything(server, simulated_day.patient_ids[0], token, granularity="reading")
    observations = [e["resource"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(observations) == 120 * len(fhir.VITAL_SIGNS)
    assert all("effectiveDateTime" in o for o in observations)


def test_a_patient_of_another_care_team_is_not_found(server, simulated_day, care_teams, token):
    other = next(p for p in simulated_day.patient_ids if care_teams[p] != care_teams[simulated_day.patient_ids[0]])
    response = _everything(server, other, token)
    assert response.status_code == 404 and response.json()["issue"][0]["code"] == "not-found"
    assert _everything(server, "patient-that-does-not-exist", token).status_code == 404


def test_a_revoked_token_stops_working(server, simulated_day, care_teams):
    patient = simulated_day.patient_ids[1]
    revocable = add_client(simulated_day.database_url, "short-lived", [care_teams[patient]])
    assert httpx.get(f"{server}/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {revocable}"}).status_code == 200
    revoke_client(simulated_day.database_url, "short-lived")
    assert httpx.get(f"{server}/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {revocable}"}).status_code == 401


def test_bad_parameters_are_answered_with_an_operation_outcome(server, simulated_day, token):
    patient = simulated_day.patient_ids[0]
    assert _everything(server, patient, token, granularity="second").status_code == 400
    assert _everything(server, patient, token, start="yesterday").json()["issue"][0]["diagnostics"].startswith("start:")
    too_wide = _everything(server, patient, token, start="2026-01-01", end="2026-11-27", granularity="reading")
    assert too_wide.status_code == 400 and too_wide.json()["issue"][0]["code"] == "too-costly"


def test_every_read_is_in_the_audit_log_with_the_client(server, simulated_day, token):
    patient = simulated_day.patient_ids[0]
    with psycopg.connect(simulated_day.database_url) as connection:
        before = connection.execute("SELECT count(*) FROM kidjamo.audit_log WHERE action = 'fhir_read'").fetchone()[0]
    assert _everything(server, patient, token).status_code == 200
    with psycopg.connect(simulated_day.database_url) as connection:
        rows = connection.execute("SELECT patient_id, detail FROM kidjamo.audit_log WHERE action = 'fhir_read' ORDER BY audit_id").fetchall()
    assert len(rows) == before + 1
    assert rows[-1][0] == patient and rows[-1][1]["client"] == "ward-ehr" and rows[-1][1]["counts"]["Observation"] > 0


def test_metadata_is_open_and_says_fhir_r4(server):
    response = httpx.get(f"{server}/fhir/metadata")
    assert response.status_code == 200 and response.json()["fhirVersion"] == "4.0.1"
