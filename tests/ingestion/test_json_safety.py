"""The service's one-scan proof that a body holds no control character nor deep nesting is never wrong.

``certainly_safe`` lets the ingestion service skip walking each decoded reading; it may say "not
certain" for a safe body (the walk then runs), but must never say "safe" where ``unsafe_content``
finds a problem, whatever the JSON encoder's escaping.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson
from hypothesis import given, settings, strategies as st

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.json_safety import certainly_safe, unsafe_content

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | text
values = st.recursive(scalars, lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
                      max_leaves=12)
readings = st.dictionaries(text, values, max_size=5)
ENCODERS = [orjson.dumps, lambda d: json.dumps(d).encode(), lambda d: json.dumps(d, ensure_ascii=False).encode()]


@settings(max_examples=400, deadline=None)
@given(document=st.one_of(readings, st.lists(readings, min_size=1, max_size=3), values), encoder=st.sampled_from(ENCODERS))
def test_a_body_called_safe_has_nothing_the_walk_would_find(document, encoder):
    body = encoder(document)
    decoded = orjson.loads(body)
    batch = decoded if isinstance(decoded, list) else [decoded]
    if certainly_safe(body, batch):
        assert [unsafe_content(reading) for reading in batch] == [None] * len(batch)


def test_every_control_character_escaped_or_raw_and_deep_nesting_are_not_called_safe():
    reading = {"device_id": "d", "vitals": {"spo2": 97.0}}
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        unsafe = {**reading, "message_id": f"m{chr(code)}"}
        for encoder in ENCODERS:
            assert not certainly_safe(encoder(unsafe), [unsafe]), (hex(code), encoder(unsafe))
    deep = {**reading, "extra": {"a": {"b": 1}}}
    assert not certainly_safe(orjson.dumps(deep), [deep])


def test_the_fleets_readings_are_certainly_safe_so_the_walk_is_skipped():
    batch = Fleet.generate(20, seed=1).readings(datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc),
                                                datetime(2026, 11, 27, 10, 1, tzinfo=timezone.utc))
    assert certainly_safe(orjson.dumps(batch[:10]), batch[:10])
