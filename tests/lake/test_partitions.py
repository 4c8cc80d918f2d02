"""The lake's one partition-path function, partition rewrite/read, and the raw manifest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

from kidjamo.lake.manifest import MANIFEST_NAME, read_manifest, write_manifest
from kidjamo.lake.partitions import minutes_between, partition_path, read_partitions, write_partitions
from kidjamo.lake.storage import Lake

MINUTE = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
SCHEMA = pa.schema([("value", pa.int64()), ("arrival_minute", pa.timestamp("us", tz="UTC"))])


def test_every_layer_landing_included_is_partitioned_by_arrival_minute_the_same_way():
    for layer in ("landing", "raw", "bronze", "quarantine", "silver", "gold", "gates"):
        assert partition_path(layer, MINUTE) == f"{layer}/vitals/dt=2026-11-27/hh=15/mm=31"
    assert partition_path("landing", MINUTE, "a.ndjson") == "landing/vitals/dt=2026-11-27/hh=15/mm=31/a.ndjson"


def test_minutes_between_is_half_open_and_starts_at_the_next_whole_minute():
    assert minutes_between(MINUTE, MINUTE + timedelta(minutes=2)) == [MINUTE, MINUTE + timedelta(minutes=1)]
    assert minutes_between(MINUTE + timedelta(seconds=1), MINUTE + timedelta(minutes=2)) == [MINUTE + timedelta(minutes=1)]


def test_rewriting_partitions_leaves_exactly_this_runs_rows(tmp_path):
    lake = Lake(f"file://{tmp_path}")
    end = MINUTE + timedelta(minutes=2)
    first = pa.table({"value": [1, 2, 3], "arrival_minute": [MINUTE, MINUTE + timedelta(minutes=1), MINUTE]}, schema=SCHEMA)
    assert write_partitions(lake, "silver", first, MINUTE, end, "part-0.parquet") == 2
    second = pa.table({"value": [4], "arrival_minute": [MINUTE]}, schema=SCHEMA)
    assert write_partitions(lake, "silver", second, MINUTE, end, "part-0.parquet") == 1
    assert read_partitions(lake, "silver", MINUTE, end, "part-0.parquet", SCHEMA).column("value").to_pylist() == [4]
    assert not lake.exists(partition_path("silver", MINUTE + timedelta(minutes=1), "part-0.parquet"))


def test_the_manifest_round_trips_sorted_by_name_and_is_empty_when_absent(tmp_path):
    lake = Lake(f"file://{tmp_path}")
    assert read_manifest(lake, MINUTE) == {}
    entries = {name: {"name": name, "records": records} for name, records in (("b.json", 1), ("a.ndjson", 3))}
    write_manifest(lake, MINUTE, entries)
    assert read_manifest(lake, MINUTE) == entries
    assert lake.exists(partition_path("raw", MINUTE, MANIFEST_NAME))
    assert list(read_manifest(lake, MINUTE)) == ["a.ndjson", "b.json"]
