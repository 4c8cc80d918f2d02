"""Fuzz of the landing step: whatever bytes a producer drops in landing, the run succeeds and loses nothing.

Hypothesis writes arbitrary byte strings, broken gzip, NUL bytes, invalid UTF-8, deep nesting and
random JSON shapes (with control characters in strings and keys) as landing files. The property:
landing -> raw -> bronze -> silver runs without an exception, every record is in bronze or in
quarantine exactly once, every bronze row in silver or silver's quarantine, and both load into
PostgreSQL (which refuses U+0000 and used to fail the whole minute's COPY).
"""

from __future__ import annotations

import gzip
import json
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from ingestion.to_raw import landing_to_raw
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from tests.layers.helpers import ARRIVAL, NEXT, payload, registry
from tests.layers.test_silver import NOTHING_LOADED, _baselines
from transforms.bronze import raw_to_bronze
from transforms.clinical.rules import default_rules
from transforms.pipeline import GATE_REJECTED_SCHEMA
from transforms.silver import bronze_to_silver

RULES = default_rules()

hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=12,
)


shaped_records = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    # Reading 1 with one field (``section__name`` or a top-level key) set to a hostile value.
    st.builds(lambda field, value: payload(1, **{field: value}),
              st.sampled_from(["message_id", "device_id", "patient_id", "timestamp", "metadata__firmware_version",
                               "vitals__spo2", "vitals", "extra", "metadata"]),
              st.one_of(hostile_text, json_values)).map(lambda r: json.dumps(r).encode()),
    st.integers(1, 3000).map(lambda depth: (json.dumps(payload(2))[:-1] + ', "d": ' + "[" * depth + "]" * depth + "}").encode()),
    st.just(json.dumps(payload(3)).encode()),
)
record_lines = st.lists(shaped_records, max_size=8).map(lambda lines: b"\n".join(lines))
file_bodies = st.one_of(record_lines, st.binary(max_size=200), record_lines.map(lambda b: b"[" + b.replace(b"\n", b",") + b"]"))
landing_files = st.lists(
    st.tuples(st.sampled_from([".ndjson", ".json", ".ndjson.gz", ".json.gz"]), file_bodies, st.booleans()),
    min_size=1, max_size=4,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(files=landing_files)
def test_any_landing_bytes_end_in_silver_or_quarantine(files, fresh_database_url):
    from transforms.load import load_measurements, load_quarantine

    with tempfile.TemporaryDirectory() as directory:
        lake = Lake(f"file://{directory}")
        for index, (suffix, body, compress) in enumerate(files):
            data = gzip.compress(body) if compress and suffix.endswith(".gz") else body
            lake.write_bytes(f"landing/vitals/{minute_partition(ARRIVAL)}/file-{index}{suffix}", data)
        raw = landing_to_raw(lake, ARRIVAL, NEXT, run_id="fuzz")
        bronze = raw_to_bronze(lake, ARRIVAL, NEXT, run_id="fuzz", registry=registry(), ingested_at=NEXT)
        reg = registry()
        silver = bronze_to_silver(bronze.bronze, registry=reg, baselines=_baselines(reg), loaded=NOTHING_LOADED,
                                  gate_rejected=GATE_REJECTED_SCHEMA.empty_table(), run_id="fuzz", rules=RULES)

        placed = bronze.bronze.select(["raw_file", "record_index"]).to_pylist()
        placed += bronze.quarantine.select(["raw_file", "record_index"]).to_pylist()
        assert len({(p["raw_file"], p["record_index"]) for p in placed}) == len(placed) == raw.records
        assert silver.silver.num_rows + silver.rejected.num_rows == bronze.bronze.num_rows
        load_quarantine(fresh_database_url, bronze.quarantine, "fuzz")
        load_quarantine(fresh_database_url, silver.rejected, "fuzz")
        load_measurements(fresh_database_url, silver.silver, "fuzz", defer_rollup=True)
