"""The api-server plugin that rejects a kidjamo_reprocess trigger with an invalid interval."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

TRIGGER_PATH = "/api/v2/dags/kidjamo_reprocess/dagRuns"


@pytest.fixture(scope="module")
def trigger_checks(airflow_home):
    """The plugin module, imported once Airflow is configured for the session."""
    from plugins import trigger_checks

    return trigger_checks


async def _echo_api(scope, receive, send):
    """Stands for Airflow's API behind the middleware: answers 200 with the body it received."""
    body, more_body = b"", True
    while more_body:
        message = await receive()
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _post(trigger_checks, path: str, body: dict) -> httpx.Response:
    async def call():
        transport = httpx.ASGITransport(app=trigger_checks.ReprocessIntervalCheck(_echo_api))
        async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
            return await client.post(path, json=body)

    return asyncio.run(call())


def test_an_inverted_interval_is_rejected_with_its_reason(trigger_checks):
    response = _post(trigger_checks, TRIGGER_PATH, {"conf": {"start": "2026-11-25T09:00:00+00:00", "end": "2026-11-25T08:00:00+00:00"}})
    assert response.status_code == 400
    assert response.json()["detail"] == ("Invalid interval: end (2026-11-25 08:00 UTC) must be after start "
                                         "(2026-11-25 09:00 UTC): kidjamo_reprocess re-processes arrival minutes [start, end)")


def test_a_valid_interval_reaches_the_api_unchanged(trigger_checks):
    body = {"conf": {"start": "2026-11-25T08:00:00+00:00", "end": "2026-11-25T09:00:00+00:00"}, "note": "x" * 100_000}
    response = _post(trigger_checks, TRIGGER_PATH, body)
    assert response.status_code == 200 and response.json() == body


@pytest.mark.parametrize("path, body", [
    ("/api/v2/dags/kidjamo_vitals/dagRuns", {"conf": {"start": "2026-11-25T09:00:00+00:00", "end": "2026-11-25T08:00:00+00:00"}}),
    (TRIGGER_PATH, {"conf": {"start": None, "end": None}}),
    (TRIGGER_PATH, {"logical_date": None}),
])
def test_other_requests_are_left_to_airflow(trigger_checks, path, body):
    assert _post(trigger_checks, path, body).status_code == 200


def test_interval_problem_ignores_what_is_not_json(trigger_checks):
    assert trigger_checks.interval_problem(b"not json") is None
    assert trigger_checks.interval_problem(json.dumps([1, 2]).encode()) is None


def test_the_plugin_registers_the_middleware(trigger_checks):
    middlewares = trigger_checks.KidjamoTriggerChecks.fastapi_root_middlewares
    assert [m["middleware"] for m in middlewares] == [trigger_checks.ReprocessIntervalCheck]
