"""POST /v1/vitals through a real uvicorn server on loopback: every status code and the guarantees."""

from __future__ import annotations

import asyncio
import json
import posixpath
import time

import httpx
import pytest

from ingestion.auth import api_key_headers, revoke_device, rotate_device, signed_headers


def landed(service, message_id: str) -> list[dict]:
    return [r for r in service.landing_readings() if r.get("message_id") == message_id]


def signed(device_id: str, secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", **signed_headers(device_id, secret, body, precise=True)}


# --- 202 and what it guarantees ----------------------------------------------------------------------
def test_one_reading_is_acknowledged_once_it_is_in_landing(service, post, new_reading, fleet, secrets):
    payload = new_reading(0)
    response = post(service, fleet.device_ids[0], secrets[fleet.device_ids[0]], payload)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 1, "duplicates": 0, "rejected": 0,
        "results": [{"index": 0, "message_id": payload["message_id"], "status": "accepted", "errors": []}],
    }
    assert landed(service, payload["message_id"]) == [payload]


def test_an_acknowledged_reading_is_in_a_durable_part_of_its_arrival_minute(service, post, new_reading, fleet, secrets):
    payload = new_reading(0)
    before = set(service.landing_files())
    post(service, fleet.device_ids[0], secrets[fleet.device_ids[0]], payload)
    new_parts = [path for path in service.landing_files() if path not in before]
    assert len(new_parts) == 1
    assert new_parts[0].startswith(f"landing/vitals/dt={time.strftime('%Y-%m-%d', time.gmtime())}/hh=")
    assert new_parts[0].rsplit("/", 1)[1].startswith("_ingest-")  # in progress: the pipeline ignores it until published


def test_a_batch_of_ten_is_one_request_and_one_group_commit(service, post, new_reading, fleet, secrets):
    batch = [new_reading(1) for _ in range(10)]
    before = set(service.landing_files())
    response = post(service, fleet.device_ids[1], secrets[fleet.device_ids[1]], batch)
    assert response.status_code == 202 and response.json()["accepted"] == 10
    assert len([path for path in service.landing_files() if path not in before]) == 1


def test_concurrent_requests_share_group_commits(service, new_reading, fleet, secrets):
    payloads = [(fleet.device_ids[i], new_reading(i)) for i in range(12) for _ in range(4)]
    before = set(service.landing_files())

    async def send_all():
        async with httpx.AsyncClient(timeout=10) as client:
            requests = []
            for device_id, payload in payloads:
                body = json.dumps(payload).encode()
                requests.append(client.post(f"{service.url}/v1/vitals", content=body, headers=signed(device_id, secrets[device_id], body)))
            return await asyncio.gather(*requests)

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [202] * len(payloads)
    new_parts = [path for path in service.landing_files() if path not in before]
    assert 1 <= len(new_parts) < len(payloads) / 4


def test_parts_are_published_as_one_landing_file_per_minute(start_service, post, new_reading, fleet, secrets):
    service = start_service()
    payloads = [new_reading(i) for i in range(6)]
    for index, payload in enumerate(payloads):
        assert post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], payload).status_code == 202
    service.stop()  # a clean stop publishes the current minute too
    files = service.landing_files()
    assert 1 <= len(files) <= 2  # 2 only if the requests straddled a minute
    assert all(posixpath.basename(path).startswith("ingest-") for path in files)
    assert sorted(r["message_id"] for r in service.landing_readings()) == sorted(p["message_id"] for p in payloads)


# --- idempotency ---------------------------------------------------------------------------------------
def test_a_resent_message_id_is_a_duplicate_and_written_once(service, post, new_reading, fleet, secrets):
    payload = new_reading(2)
    device_id = fleet.device_ids[2]
    assert post(service, device_id, secrets[device_id], payload).json()["accepted"] == 1
    again = post(service, device_id, secrets[device_id], payload)
    assert again.status_code == 202
    assert again.json()["duplicates"] == 1 and again.json()["results"][0]["status"] == "duplicate"
    assert len(landed(service, payload["message_id"])) == 1


def test_same_device_and_instant_under_a_new_message_id_is_a_duplicate(service, post, new_reading, fleet, secrets):
    payload = new_reading(2)
    device_id = fleet.device_ids[2]
    post(service, device_id, secrets[device_id], payload)
    resend = {**payload, "message_id": "another-id", "timestamp": payload["timestamp"].replace("Z", "+00:00")}
    assert post(service, device_id, secrets[device_id], resend).json()["results"][0]["status"] == "duplicate"
    assert landed(service, "another-id") == []


def test_a_duplicate_inside_one_batch_is_written_once(service, post, new_reading, fleet, secrets):
    payload = new_reading(3)
    device_id = fleet.device_ids[3]
    response = post(service, device_id, secrets[device_id], [payload, payload])
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "duplicate"]
    assert len(landed(service, payload["message_id"])) == 1


# --- 422 -----------------------------------------------------------------------------------------------
def test_an_invalid_field_gets_422_with_path_expected_and_got(service, post, new_reading, fleet, secrets):
    payload = new_reading(4, spo2="ninety-four")
    del payload["timestamp"]
    response = post(service, fleet.device_ids[4], secrets[fleet.device_ids[4]], payload)
    assert response.status_code == 422
    errors = {error["path"]: error for error in response.json()["detail"]}
    assert errors["vitals.spo2"] == {"path": "vitals.spo2", "expected": "a number", "got": '"ninety-four" (string)'}
    assert errors["timestamp"]["got"] == "nothing (field absent)" and "ISO-8601" in errors["timestamp"]["expected"]
    assert landed(service, payload["message_id"]) == []


@pytest.mark.parametrize("kept", [("heart_rate", "temperature"), ("temperature",), ("spo2",), ("pain_scale",)])
def test_a_reading_lacking_vitals_is_accepted_with_those_it_has(service, post, new_reading, fleet, secrets, kept):
    payload = new_reading(4)
    payload["vitals"] = {name: payload["vitals"][name] for name in kept}
    response = post(service, fleet.device_ids[4], secrets[fleet.device_ids[4]], payload)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert landed(service, payload["message_id"]) == [payload]


@pytest.mark.parametrize("vitals, got", [({}, "no vital sign"), ({"spo2": None, "temperature": None}, "none of them (spo2: null, temperature: null)"),
                                         ({"ambient_light": 3}, "none of them (ambient_light: 3 (integer))")])
def test_a_reading_without_any_vital_gets_422_naming_vitals(service, post, new_reading, fleet, secrets, vitals, got):
    payload = {**new_reading(4), "vitals": vitals}
    response = post(service, fleet.device_ids[4], secrets[fleet.device_ids[4]], payload)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["path"] == "vitals" and error["got"] == got
    assert error["expected"].startswith("at least one vital sign (spo2, heart_rate, temperature")
    assert landed(service, payload["message_id"]) == []


def test_a_malformed_vital_alone_gets_422_naming_that_vital(service, post, new_reading, fleet, secrets):
    payload = {**new_reading(4), "vitals": {"temperature": "38.5"}}
    response = post(service, fleet.device_ids[4], secrets[fleet.device_ids[4]], payload)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"path": "vitals.temperature", "expected": "a number", "got": '"38.5" (string)'}]


def test_a_batch_with_some_invalid_readings_keeps_the_valid_ones(service, post, new_reading, fleet, secrets):
    good, bad = new_reading(4), new_reading(4, pain_scale=7.5)
    response = post(service, fleet.device_ids[4], secrets[fleet.device_ids[4]], [good, bad])
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["results"][1]["errors"] == [{"path": "[1].vitals.pain_scale", "expected": "an integer from 0 to 10", "got": "7.5 (number)"}]
    assert len(landed(service, good["message_id"])) == 1 and landed(service, bad["message_id"]) == []


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", "JSON (one reading or a list of readings)"),
        (b'{"spo2": NaN}', "JSON (one reading or a list of readings)"),
        (b"[]", "1 to 10 readings"),
    ],
)
def test_a_malformed_body_gets_422(service, fleet, secrets, body, expected):
    device_id = fleet.device_ids[5]
    response = httpx.post(f"{service.url}/v1/vitals", content=body, headers=signed(device_id, secrets[device_id], body))
    assert response.status_code == 422
    assert response.json()["detail"][0]["expected"] == expected


def test_more_than_ten_readings_gets_422(service, post, new_reading, fleet, secrets):
    response = post(service, fleet.device_ids[5], secrets[fleet.device_ids[5]], [new_reading(5) for _ in range(11)])
    assert response.status_code == 422
    assert response.json()["detail"] == [{"path": "body", "expected": "1 to 10 readings", "got": "11 readings"}]


# --- 413 and 415 ---------------------------------------------------------------------------------------
def test_an_oversized_body_gets_413(service, fleet, secrets):
    device_id = fleet.device_ids[5]
    body = json.dumps({"padding": "x" * 70_000}).encode()
    response = httpx.post(f"{service.url}/v1/vitals", content=body, headers=signed(device_id, secrets[device_id], body))
    assert response.status_code == 413


def test_an_oversized_body_without_content_length_gets_413(service, fleet, secrets):
    device_id = fleet.device_ids[5]

    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    headers = {"Content-Type": "application/json", "X-Device-Id": device_id, "X-Api-Key": secrets[device_id]}
    response = httpx.post(f"{service.url}/v1/vitals", content=chunks(), headers=headers)
    assert response.status_code == 413


def test_a_wrong_content_type_gets_415(service, new_reading, fleet, secrets):
    device_id = fleet.device_ids[5]
    body = json.dumps(new_reading(5)).encode()
    headers = {**signed(device_id, secrets[device_id], body), "Content-Type": "text/plain"}
    assert httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers).status_code == 415


# --- 401 and 403 ---------------------------------------------------------------------------------------
def test_an_api_key_is_accepted(service, new_reading, fleet, secrets):
    device_id = fleet.device_ids[6]
    headers = {"Content-Type": "application/json", **api_key_headers(device_id, secrets[device_id])}
    response = httpx.post(f"{service.url}/v1/vitals", json=new_reading(6), headers=headers)
    assert response.status_code == 202


@pytest.mark.parametrize(
    "make_headers, reason",
    [
        (lambda device, secret, body: {}, "missing X-Device-Id"),
        (lambda device, secret, body: {"X-Device-Id": device}, "missing credentials"),
        (lambda device, secret, body: api_key_headers(device, secret + "x"), "wrong API key"),
        (lambda device, secret, body: signed_headers(device, "kdj_not-the-secret", body), "wrong signature"),
        (lambda device, secret, body: signed_headers(device, secret, body + b" "), "wrong signature"),
        (lambda device, secret, body: signed_headers(device, secret, body, now=time.time() - 900), "from the server clock"),
        (lambda device, secret, body: signed_headers("device-999999", secret, body), "unknown, inactive or revoked"),
    ],
    ids=["no-device", "no-credential", "wrong-api-key", "wrong-secret", "tampered-body", "stale-timestamp", "unknown-device"],
)
def test_a_missing_or_wrong_credential_gets_401(service, new_reading, fleet, secrets, make_headers, reason):
    device_id = fleet.device_ids[6]
    body = json.dumps(new_reading(6)).encode()
    headers = {"Content-Type": "application/json", **make_headers(device_id, secrets[device_id], body)}
    response = httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers)
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert "WWW-Authenticate" in response.headers


def test_a_replayed_signature_gets_401(service, new_reading, fleet, secrets):
    device_id = fleet.device_ids[6]
    body = json.dumps(new_reading(6)).encode()
    headers = signed(device_id, secrets[device_id], body)
    assert httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers).status_code == 202
    replay = httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers)
    assert replay.status_code == 401 and "replayed signature" in replay.json()["detail"]


def test_a_reading_for_another_patient_gets_403(service, post, new_reading, fleet, secrets):
    payload = {**new_reading(7), "patient_id": fleet.patient_ids[8]}
    response = post(service, fleet.device_ids[7], secrets[fleet.device_ids[7]], payload)
    assert response.status_code == 403 and "not assigned to patient" in response.json()["detail"]
    assert landed(service, payload["message_id"]) == []


def test_a_reading_of_another_device_gets_403(service, post, new_reading, fleet, secrets):
    response = post(service, fleet.device_ids[7], secrets[fleet.device_ids[7]], [new_reading(7), new_reading(8)])
    assert response.status_code == 403 and "may not post readings of device" in response.json()["detail"]


def test_rotation_keeps_the_old_secret_for_the_grace_period_and_revocation_refuses_all(start_service, post, new_reading, fleet, secrets, ingest_database):
    service = start_service(credential_cache_s=0.3)
    device_id = fleet.device_ids[9]
    old = secrets[device_id]
    new = rotate_device(ingest_database, device_id)
    time.sleep(0.8)
    assert post(service, device_id, new, new_reading(9)).status_code == 202
    assert post(service, device_id, old, new_reading(9)).status_code == 202
    revoke_device(ingest_database, device_id)
    time.sleep(0.8)
    refused = post(service, device_id, new, new_reading(9))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


# --- 429 -----------------------------------------------------------------------------------------------
def test_a_device_above_its_rate_gets_429_with_retry_after_and_others_are_not_starved(start_service, post, new_reading, fleet, secrets):
    service = start_service(rate_per_device=0.5, burst_per_device=3)
    noisy, quiet = fleet.device_ids[10], fleet.device_ids[11]
    assert post(service, noisy, secrets[noisy], [new_reading(10) for _ in range(3)]).status_code == 202
    limited = post(service, noisy, secrets[noisy], new_reading(10))
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) == 2
    assert post(service, quiet, secrets[quiet], new_reading(11)).status_code == 202


# --- 503 -----------------------------------------------------------------------------------------------
def test_an_unwritable_landing_zone_gets_503_and_not_ready(start_service, post, new_reading, fleet, secrets):
    service = start_service()
    blocker = service.lake.local_path("landing")
    with open(blocker, "w") as handle:  # a file where the landing folder should be
        handle.write("not a folder")
    response = post(service, fleet.device_ids[0], secrets[fleet.device_ids[0]], new_reading(0))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    ready = httpx.get(f"{service.url}/readyz")
    assert ready.status_code == 503 and ready.json()["landing"] != "ok"


# --- health, metrics, docs -----------------------------------------------------------------------------
def test_health_and_readiness(service):
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{service.url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "landing": "ok", "database": "ok", "credentials": "ok"}


def test_metrics_count_requests_readings_and_latency(service, post, new_reading, fleet, secrets):
    post(service, fleet.device_ids[0], secrets[fleet.device_ids[0]], new_reading(0))
    text = httpx.get(f"{service.url}/metrics").text
    assert 'kidjamo_ingest_requests_total{status="202"}' in text
    accepted = next(line for line in text.splitlines() if line.startswith('kidjamo_ingest_readings_total{outcome="accepted"}'))
    assert float(accepted.split()[-1]) >= 1
    assert 'kidjamo_ingest_request_duration_seconds_bucket{le="0.1"}' in text
    assert "kidjamo_ingest_landing_files_total" in text and "# TYPE kidjamo_ingest_request_duration_seconds histogram" in text


def test_openapi_documents_the_endpoint(service):
    assert httpx.get(f"{service.url}/docs").status_code == 200
    spec = httpx.get(f"{service.url}/openapi.json").json()
    operation = spec["paths"]["/v1/vitals"]["post"]
    assert {"202", "401", "403", "413", "415", "422", "429"} <= set(operation["responses"])
    assert "application/json" in operation["requestBody"]["content"]
    reading = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert reading["required"] == ["device_id", "patient_id", "timestamp", "vitals"]
    assert "required" not in reading["properties"]["vitals"] and reading["properties"]["vitals"]["minProperties"] == 1


def test_an_unreachable_database_gets_503_and_not_ready(start_service, post, new_reading, fleet, secrets, postgres_server):
    service = start_service()
    service.stop()
    service.database_url = postgres_server.url("no_such_database")
    service.start()
    response = post(service, fleet.device_ids[0], secrets[fleet.device_ids[0]], new_reading(0))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    ready = httpx.get(f"{service.url}/readyz")
    assert ready.status_code == 503 and ready.json()["database"].startswith("unreachable")
