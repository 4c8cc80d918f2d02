"""Landing -> raw: byte-exact verified copies, a manifest, landing emptied, replay-safe."""

import gzip
import hashlib
import json

from ingestion.to_raw import landing_to_raw
from kidjamo.lake.manifest import read_manifest
from tests.layers.helpers import ARRIVAL, NEXT, land, payload


def test_raw_copy_is_byte_exact_and_listed_in_the_manifest(lake):
    landed = land(lake, "a.ndjson", [payload(1), payload(2)])
    original = lake.read_bytes(landed)
    result = landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    entry = read_manifest(lake, ARRIVAL)["a.ndjson"]
    assert lake.read_bytes(entry["path"]) == original
    assert entry["sha256"] == hashlib.sha256(original).hexdigest()
    assert (entry["size"], entry["records"], entry["run_id"]) == (len(original), 2, "r1")
    assert result.counts()["raw_records"] == 2


def test_landing_file_is_removed_once_copied(lake):
    landed = land(lake, "a.ndjson", [payload(1)])
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    assert not lake.exists(landed)


def test_in_progress_names_are_left_alone(lake):
    in_progress = land(lake, "_writing.ndjson", [payload(1)])
    hidden = land(lake, ".tmp.ndjson", [payload(1)])
    result = landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    assert result.files_copied == 0
    assert lake.exists(in_progress) and lake.exists(hidden)


def test_rerun_after_landing_is_gone_reports_the_same_records(lake):
    land(lake, "a.ndjson", [payload(1), payload(2), payload(3)])
    first = landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    second = landing_to_raw(lake, ARRIVAL, NEXT, run_id="r2")
    assert second.files_copied == 0
    assert second.records == first.records == 3
    assert read_manifest(lake, ARRIVAL)["a.ndjson"]["run_id"] == "r1"


def test_same_name_with_other_bytes_is_kept_under_a_new_name(lake):
    land(lake, "a.ndjson", [payload(1)])
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    land(lake, "a.ndjson", [payload(2), payload(3)])
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r2")
    manifest = read_manifest(lake, ARRIVAL)
    assert len(manifest) == 2
    assert sorted(entry["records"] for entry in manifest.values()) == [1, 2]


def test_array_object_and_gzip_files_count_their_records(lake):
    path = "landing/vitals/dt=2026-11-27/hh=15/mm=31/"
    lake.write_bytes(path + "array.json", json.dumps([payload(1), payload(2)]).encode())
    lake.write_bytes(path + "single.json", json.dumps(payload(3), indent=2).encode())
    lake.write_bytes(path + "packed.ndjson.gz", gzip.compress(b"\n".join(json.dumps(payload(i)).encode() for i in (4, 5, 6))))
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    counts = {name: entry["records"] for name, entry in read_manifest(lake, ARRIVAL).items()}
    assert counts == {"array.json": 2, "single.json": 1, "packed.ndjson.gz": 3}
