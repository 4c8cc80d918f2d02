"""Fuzz of the ingestion service over real HTTP: no body makes it fail, and what it accepts the pipeline keeps.

Hypothesis posts arbitrary bytes and JSON shapes (valid readings with hostile strings, deep nesting,
wrong types, batches) as a correctly signed device. The properties: the answer is never a 5xx; a
202 names one outcome per reading; and every reading it accepted is in landing and then, after the
landing and bronze steps, in bronze or quarantine.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

from ingestion.auth import signed_headers
from ingestion.to_raw import landing_to_raw
from transforms.bronze import raw_to_bronze
from transforms.registry import load_registry

hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=10)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=10,
)
FIELDS = ["message_id", "timestamp", "vitals", "vitals.spo2", "vitals.pain_scale", "metadata", "metadata.firmware_version", "extra"]


def _spelled(value, depth: int) -> str:
    """JSON text of ``value`` wrapped in ``depth`` arrays (written out: json.dumps recurses)."""
    return "[" * depth + json.dumps(value) + "]" * depth


def test_no_body_gets_a_5xx_and_every_accepted_reading_reaches_bronze_or_quarantine(
        start_service, fleet, secrets, new_reading, ingest_database):
    service = start_service(rate_per_device=100_000, burst_per_device=100_000)
    device = fleet.device_ids[5]

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def post_anything(data):
        kind = data.draw(st.sampled_from(["bytes", "reading", "batch", "deep"]))
        if kind == "bytes":
            body = data.draw(st.binary(max_size=300))
        elif kind == "deep":
            body = ('{"device_id": "%s", "x": %s}' % (device, _spelled(None, data.draw(st.integers(1, 1100))))).encode()
        else:
            readings = []
            for _ in range(data.draw(st.integers(1, 3)) if kind == "batch" else 1):
                reading = new_reading(5)
                path = data.draw(st.sampled_from(FIELDS))
                section, _, name = path.partition(".")
                value = data.draw(st.one_of(hostile_text, json_values))
                if name and isinstance(reading.get(section), dict):
                    reading[section][name] = value
                else:
                    reading[section] = value
                readings.append(reading)
            body = json.dumps(readings if kind == "batch" else readings[0]).encode()
        headers = {"Content-Type": "application/json", **signed_headers(device, secrets[device], body, precise=True)}
        response = httpx.post(f"{service.url}/v1/vitals", content=body, headers=headers, timeout=10)
        assert response.status_code < 500, response.text
        if response.status_code == 202:
            assert {result["status"] for result in response.json()["results"]} <= {"accepted", "duplicate", "rejected"}

    post_anything()
    service.stop()  # publishes the last minute
    accepted = service.landing_readings()
    assert accepted, "the fuzz run must have had readings accepted"
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(minutes=2)
    raw = landing_to_raw(service.lake, start, end, run_id="fuzz")
    bronze = raw_to_bronze(service.lake, start, end, run_id="fuzz", registry=load_registry(ingest_database), ingested_at=end)
    assert raw.records == len(accepted) == bronze.bronze.num_rows + bronze.quarantine.num_rows
