"""Property: whatever arrives, every record ends in exactly one place, and the counts add up.

raw records = bronze rows + bronze quarantine; bronze rows = silver + rejected + duplicates.
Hypothesis throws random, malformed and duplicated batches at the real layer functions.
"""

import json
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from ingestion.to_raw import landing_to_raw
from kidjamo.lake.storage import Lake
from transforms.bronze import raw_to_bronze
from transforms.pipeline import GATE_REJECTED_SCHEMA
from transforms.silver import bronze_to_silver
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, registry
from tests.layers.test_silver import NOTHING_LOADED, _baselines
from transforms.clinical.rules import default_rules

valid_reading = st.builds(
    lambda device, second, spo2, pain, hr: json.dumps(payload(
        device, timestamp=f"2026-11-27T15:30:{second:02d}Z", vitals__spo2=spo2, vitals__pain_scale=pain, vitals__heart_rate=hr)),
    device=st.integers(1, 7),  # 6 and 7 are not in the registry
    second=st.integers(0, 3),  # few distinct instants: many natural duplicates
    spo2=st.one_of(st.floats(40, 110, allow_nan=False), st.just(95.0)),
    pain=st.one_of(st.integers(0, 12), st.floats(0, 10, allow_nan=False)),
    hr=st.one_of(st.integers(20, 320), st.text(max_size=3)),
)
malformed = st.one_of(
    st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and "\n" not in s and "\r" not in s),
    st.just("[1,2,3]"), st.just("null"), st.just('{"device_id": 5}'), st.just('{"vitals": "x"}'),
    st.text(max_size=30).map(lambda s: "{" + s.replace("\n", " ").replace("\r", " ") + "}"),
)
files = st.lists(st.lists(st.one_of(valid_reading, valid_reading, malformed), min_size=0, max_size=15), min_size=1, max_size=4)

RULES = default_rules()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch_files=files, resend=st.booleans())
def test_every_record_is_accounted_for(batch_files, resend):
    with tempfile.TemporaryDirectory() as directory:
        lake = Lake(f"file://{directory}")
        for index, lines in enumerate(batch_files):
            land(lake, f"file-{index}.ndjson", lines + (lines[:2] if resend else []))
        raw = landing_to_raw(lake, ARRIVAL, NEXT, run_id="r")
        bronze = raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r", registry=registry(), ingested_at=NEXT)
        reg = registry()
        silver = bronze_to_silver(bronze.bronze, registry=reg, baselines=_baselines(reg), loaded=NOTHING_LOADED,
                                  gate_rejected=GATE_REJECTED_SCHEMA.empty_table(), run_id="r", rules=RULES)

        assert raw.records == bronze.bronze.num_rows + bronze.quarantine.num_rows
        reasons = silver.rejected.column("reason").to_pylist()
        assert bronze.bronze.num_rows == silver.silver.num_rows + reasons.count("gate_rejected") + reasons.count("duplicate")
        placed = [(r["raw_file"], r["record_index"]) for r in bronze.bronze.select(["raw_file", "record_index"]).to_pylist()]
        placed += [(r["raw_file"], r["record_index"]) for r in bronze.quarantine.select(["raw_file", "record_index"]).to_pylist()]
        assert len(placed) == len(set(placed)) == raw.records
        keys = silver.silver.select(["device_id", "measured_at"]).to_pylist()
        assert len(keys) == len({(k["device_id"], k["measured_at"]) for k in keys})
