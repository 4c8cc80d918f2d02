"""Erasure and a minute run writing the same raw partition take turns: neither drops the other's manifest entries."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone

from ingestion.to_raw import landing_to_raw
from kidjamo.lake.manifest import read_manifest
from kidjamo.lake.partitions import partition_path
from kidjamo.lake.storage import Lake
from tests.layers.test_raw_partition_lock import ManifestPausingLake
from transforms.rights import erase_patient

ARRIVAL = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
NEXT = ARRIVAL + timedelta(minutes=1)


def _reading(device: str, patient: str, second: int) -> bytes:
    return json.dumps({"device_id": device, "patient_id": patient, "timestamp": f"2026-11-27T15:30:{second:02d}Z",
                       "vitals": {"spo2": 95.0, "heart_rate": 80, "temperature": 36.8}}).encode()


def test_an_erasure_beside_a_minute_run_keeps_the_runs_raw_file_in_the_manifest(registered_url, tmp_path):
    root = f"file://{tmp_path / 'lake'}"
    slow_lake, lake = ManifestPausingLake(root, patience_s=3.0), Lake(root)
    lake.write_bytes(partition_path("landing", ARRIVAL, "batch.ndjson"),
                     _reading("device-001", "patient-001", 0) + b"\n" + _reading("device-002", "patient-002", 0) + b"\n")
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="run-1", database_url=registered_url)
    errors: list[BaseException] = []

    def run(action) -> None:
        try:
            action()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    erasure = threading.Thread(target=run, args=(lambda: erase_patient("patient-001", database_url=registered_url, lake=slow_lake,
                                                                        pseudonym_key="test-key"),))
    erasure.start()
    assert slow_lake.paused.wait(30), errors  # the erasure rewrote batch.ndjson and is about to update the manifest
    lake.write_bytes(partition_path("landing", ARRIVAL, "late.ndjson"), _reading("device-002", "patient-002", 30) + b"\n")
    minute_run = threading.Thread(target=run, args=(lambda: landing_to_raw(lake, ARRIVAL, NEXT, run_id="run-2",
                                                                           database_url=registered_url),))
    minute_run.start()
    minute_run.join(1.5)
    slow_lake.resume.set()
    erasure.join(60)
    minute_run.join(30)
    assert errors == []
    manifest = read_manifest(lake, ARRIVAL)
    assert set(manifest) == {"batch.ndjson", "late.ndjson"}
    batch = lake.read_bytes(partition_path("raw", ARRIVAL, "batch.ndjson"))
    assert manifest["batch.ndjson"]["sha256"] == hashlib.sha256(batch).hexdigest() and b"patient-001" not in batch
