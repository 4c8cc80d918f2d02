"""Records from a direct landing producer that used to break the minute: control characters, deep nesting.

Each is quarantined with its own reason (``invalid_text``, ``too_deeply_nested``), the rest of the
file goes on to bronze, and the quarantine rows load into PostgreSQL (which cannot store U+0000).
"""

from __future__ import annotations

import json

import pytest

from ingestion.to_raw import landing_to_raw
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, registry
from transforms.bronze import raw_to_bronze


def _bronze(lake, **kwargs):
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    return raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r1", registry=registry(), ingested_at=NEXT, **kwargs)


def _quarantined(result) -> list[tuple[str, str]]:
    return list(zip(result.quarantine["reason"].to_pylist(), result.quarantine["field"].to_pylist()))


@pytest.mark.parametrize(
    ("override", "field"),
    [({"message_id": "m-\u0000"}, "message_id"), ({"device_id": "device-1\u0007"}, "device_id"),
     ({"metadata__firmware_version": "v2\u001b[31m"}, "metadata.firmware_version"), ({"patient_id": "patient-1\u0085"}, "patient_id")],
)
def test_a_control_character_in_a_string_field_is_quarantined_as_invalid_text(lake, override, field):
    land(lake, "a.ndjson", [payload(1, **override), payload(2)])
    result = _bronze(lake)
    assert _quarantined(result) == [("invalid_text", field)]
    assert "control character" in result.quarantine["detail"][0].as_py()
    assert result.bronze["device_id"].to_pylist() == ["device-2"]


def test_quarantine_rows_with_nul_characters_load_into_postgresql(lake, fresh_database_url):
    from transforms.load import load_quarantine

    raw_nul = json.dumps(payload(3))[:-1].encode() + b', "x": "\x00"}'  # a raw NUL byte: not JSON at all
    land(lake, "a.ndjson", [payload(1, message_id="m-\u0000"), raw_nul.decode(), payload(2)])
    result = _bronze(lake)
    assert sorted(reason for reason, _ in _quarantined(result)) == ["invalid_json", "invalid_text"]
    assert load_quarantine(fresh_database_url, result.quarantine, "r1")["inserted"] == 2


@pytest.mark.parametrize("depth", [17, 300, 5_000, 200_000])
def test_a_record_nested_too_deep_is_quarantined_before_anything_parses_it(lake, depth):
    deep = json.dumps(payload(1))[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    land(lake, "a.ndjson", [deep, payload(2)])
    result = _bronze(lake)
    assert _quarantined(result) == [("too_deeply_nested", None)]
    assert result.bronze["device_id"].to_pylist() == ["device-2"]


def test_a_json_array_file_nested_too_deep_is_split_and_quarantined(lake):
    deep = "[" * 50_000 + "]" * 50_000
    lake.write_bytes("landing/vitals/dt=2026-11-27/hh=15/mm=31/deep.json", deep.encode())
    result = _bronze(lake)
    assert result.records == 1 and _quarantined(result) == [("too_deeply_nested", None)]


def test_nesting_within_the_limit_is_kept_and_counted_as_an_extra_field(lake):
    nested = payload(1)
    nested["producer"] = {"a": {"b": {"c": [1, [2, [3]]]}}}
    land(lake, "a.ndjson", [nested])
    result = _bronze(lake)
    assert result.quarantine.num_rows == 0 and result.bronze["extra_fields"].to_pylist() == [1]
