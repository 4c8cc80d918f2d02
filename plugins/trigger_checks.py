"""An Airflow plugin that makes the trigger form reject an invalid ``kidjamo_reprocess`` interval.

A DAG's params are validated one by one against their JSON schema, so the form can check that
``start`` and ``end`` are date-times but not that ``start`` comes first. This middleware of the
api-server checks the pair when a ``kidjamo_reprocess`` run is created (from the UI's trigger
form or the REST API) and answers ``400`` with the reason, which the form shows; the run is never
created. The DAG's first task checks again, for runs created any other way.

Airflow loads it from the plugins folder (``AIRFLOW__CORE__PLUGINS_FOLDER`` = this folder).
"""

from __future__ import annotations

import json
import re

from airflow.plugins_manager import AirflowPlugin

REPROCESS_DAG_ID = "kidjamo_reprocess"
_TRIGGER_PATH = re.compile(rf"(?:^|/)api/v2/dags/{REPROCESS_DAG_ID}/dagRuns/?$")


def interval_problem(body: bytes) -> str | None:
    """Why the trigger request ``body`` has an invalid interval, or None (also when it has none to check)."""
    from transforms.pipeline import parse_interval

    try:
        conf = json.loads(body or b"{}").get("conf") or {}
    except (ValueError, AttributeError):
        return None  # not ours to judge: the API answers malformed requests itself
    if not isinstance(conf, dict) or conf.get("start") in (None, "") or conf.get("end") in (None, ""):
        return None  # missing values are reported by the params' own validation
    try:
        parse_interval(conf["start"], conf["end"])
    except ValueError as problem:
        return f"Invalid interval: {problem}"
    return None


class ReprocessIntervalCheck:
    """ASGI middleware: a ``kidjamo_reprocess`` trigger with an invalid interval gets a 400 and no run."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not _TRIGGER_PATH.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        messages, body, more_body = [], b"", True
        while more_body:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            more_body = message.get("more_body", False) and message["type"] == "http.request"
        problem = interval_problem(body)
        if problem is not None:
            payload = json.dumps({"detail": problem}).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        replay = iter(messages)

        async def replay_then_receive():
            for message in replay:
                return message
            return await receive()

        await self.app(scope, replay_then_receive, send)


class KidjamoTriggerChecks(AirflowPlugin):
    name = "kidjamo_trigger_checks"
    fastapi_root_middlewares = [
        {"name": "kidjamo_reprocess_interval", "middleware": ReprocessIntervalCheck, "args": [], "kwargs": {}},
    ]
