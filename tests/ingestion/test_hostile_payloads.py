"""Hostile payloads get a 422 naming the field, never a 500 and never a reading that breaks the batch later."""

from __future__ import annotations

import json

import httpx
import pytest

from ingestion.auth import signed_headers


@pytest.fixture(scope="module")
def open_service(start_service):
    """A service without practical rate limits: these tests post many times from one device."""
    return start_service(rate_per_device=10_000, burst_per_device=10_000)


def _post_body(service, device_id: str, secret: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", **signed_headers(device_id, secret, body, precise=True)}
    return httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers, timeout=10)


def _with_nested_field(reading: dict, depth: int) -> bytes:
    """The reading with an extra field ``deep`` holding arrays ``depth`` levels deep (spelled out: json.dumps recurses)."""
    text = json.dumps(reading)
    return (text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}").encode()


@pytest.mark.parametrize("depth", [20, 254, 255, 600, 1023])
def test_a_reading_nested_too_deep_gets_422_naming_the_field(open_service, new_reading, fleet, secrets, depth):
    device = fleet.device_ids[1]
    response = _post_body(open_service, device, secrets[device], _with_nested_field(new_reading(1), depth))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["path"].startswith("deep") and "levels of nesting" in error["expected"]


def test_a_reading_nested_a_little_is_accepted(open_service, new_reading, fleet, secrets):
    device = fleet.device_ids[1]
    response = _post_body(open_service, device, secrets[device], _with_nested_field(new_reading(1), 3))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("field", "text"),
    [("message_id", "m-\u0000-1"), ("message_id", "line\nbreak"), ("device_id", None), ("firmware_version", "v2\u0007"),
     ("note", "a \u009b CSI")],
)
def test_a_control_character_in_any_string_gets_422_naming_the_field(open_service, new_reading, fleet, secrets, field, text):
    device = fleet.device_ids[2]
    reading = new_reading(2)
    if field == "firmware_version":
        reading["metadata"]["firmware_version"] = text
    elif field == "device_id":
        field, text = "vitals.k\u0000ey", None  # a control character in a key
        reading["vitals"]["k\u0000ey"] = 1
    else:
        reading[field] = text
    response = _post_body(open_service, device, secrets[device], json.dumps(reading).encode())
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert field.split(".")[-1] in error["path"] and "control character" in error["got"]
    assert not [r for r in open_service.landing_readings() if r.get("message_id") == reading.get("message_id")]


def test_a_batch_with_one_hostile_reading_keeps_the_others(open_service, new_reading, fleet, secrets):
    device = fleet.device_ids[3]
    good, bad = new_reading(3), new_reading(3)
    bad["message_id"] = "nul-\u0000"
    response = _post_body(open_service, device, secrets[device], json.dumps([good, bad]).encode())
    assert response.status_code == 202, response.text
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "rejected"]
    assert response.json()["results"][1]["errors"][0]["path"] == "[1].message_id"
