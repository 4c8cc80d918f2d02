"""The raw manifest: one ``_manifest.json`` per raw partition naming every raw file it holds.

Each entry is raw file name -> {name, path, size, sha256, records, run_id}. The manifest is what the
landing -> raw copy writes last, and what the accounting check counts raw records from.
"""

from __future__ import annotations

import json
from datetime import datetime

from kidjamo.lake.partitions import minute_partition, partition_path
from kidjamo.lake.storage import Lake

MANIFEST_NAME = "_manifest.json"


def read_manifest(lake: Lake, minute: datetime) -> dict[str, dict]:
    """The manifest of one raw partition: raw file name -> {path, size, sha256, records, run_id}."""
    path = partition_path("raw", minute, MANIFEST_NAME)
    if not lake.exists(path):
        return {}
    return {entry["name"]: entry for entry in json.loads(lake.read_bytes(path))["files"]}


def write_manifest(lake: Lake, minute: datetime, entries: dict[str, dict]) -> None:
    """Replace the manifest of one raw partition with ``entries`` (sorted by name)."""
    document = {"partition": minute_partition(minute), "files": [entries[name] for name in sorted(entries)]}
    lake.write_bytes(partition_path("raw", minute, MANIFEST_NAME), json.dumps(document, indent=1).encode())
