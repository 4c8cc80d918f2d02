"""Two writers of one raw partition take turns, and bronze sees every raw file, listed or not."""

from __future__ import annotations

import posixpath
import threading

import pytest

from ingestion import to_raw
from ingestion.to_raw import landing_to_raw
from kidjamo.lake.manifest import read_manifest
from kidjamo.lake.partitions import partition_path
from kidjamo.lake.storage import Lake
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, registry
from transforms.bronze import raw_to_bronze
from transforms.pipeline import Interval, step_to_raw


class ManifestPausingLake(Lake):
    """A real lake that, just before writing a manifest, waits (up to ``patience_s``) for ``resume``.

    It puts a slow minute run exactly between its raw copies and its manifest write, the window in
    which another run of the same partition used to read the old manifest.
    """

    def __init__(self, root_url: str, patience_s: float):
        super().__init__(root_url)
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.patience_s = patience_s

    def write_bytes(self, path: str, data: bytes, *, durable: bool = True) -> None:
        if posixpath.basename(path) == "_manifest.json" and not self.paused.is_set():
            self.paused.set()
            self.resume.wait(self.patience_s)
        super().write_bytes(path, data, durable=durable)


def _raw_names(lake: Lake) -> set[str]:
    return {posixpath.basename(f.path) for f in lake.list_files(partition_path("raw", ARRIVAL)) if not f.path.endswith("_manifest.json")}


def test_a_minute_run_and_a_backfill_of_the_same_partition_never_orphan_a_raw_file(tmp_path, migrated_url):
    root = f"file://{tmp_path / 'lake'}"
    slow_lake, lake = ManifestPausingLake(root, patience_s=3.0), Lake(root)
    land(lake, "a.ndjson", [payload(1)])
    errors: list[BaseException] = []

    def run(target_lake: Lake, run_id: str) -> None:
        try:
            step_to_raw(Interval.for_task(ARRIVAL, NEXT, lake=target_lake, database_url=migrated_url, run_id=run_id))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    minute_run = threading.Thread(target=run, args=(slow_lake, "minute-run"))
    minute_run.start()
    assert slow_lake.paused.wait(10)
    land(lake, "c.ndjson", [payload(2), payload(3)])  # arrives while the minute run is between its writes
    backfill = threading.Thread(target=run, args=(lake, "backfill"))
    backfill.start()
    backfill.join(1.5)
    slow_lake.resume.set()
    minute_run.join(10)
    backfill.join(10)
    assert errors == []
    manifest = read_manifest(lake, ARRIVAL)
    assert set(manifest) == _raw_names(lake) == {"a.ndjson", "c.ndjson"}
    assert sum(entry["records"] for entry in manifest.values()) == 3
    assert lake.list_files("landing/vitals") == []


def test_bronze_adopts_a_raw_file_its_manifest_does_not_name(lake, migrated_url):
    land(lake, "a.ndjson", [payload(1)])
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1", database_url=migrated_url)
    lake.write_bytes(partition_path("raw", ARRIVAL, "orphan.ndjson"), b'{"device_id": "device-2"}\n{"device_id": "device-3"}\n')
    result = raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r2", registry=registry(), ingested_at=NEXT, database_url=migrated_url)
    assert result.records == 3  # the orphan's two records are counted (and quarantined: they lack fields)
    assert read_manifest(lake, ARRIVAL)["orphan.ndjson"]["records"] == 2


def test_bronze_fails_naming_a_raw_file_its_manifest_names_but_the_lake_lost(lake):
    land(lake, "a.ndjson", [payload(1)])
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    lake.delete(partition_path("raw", ARRIVAL, "a.ndjson"))
    with pytest.raises(to_raw.RawLineageError, match="a.ndjson"):
        raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r2", registry=registry(), ingested_at=NEXT)
