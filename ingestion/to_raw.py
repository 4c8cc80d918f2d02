"""Landing -> raw: byte-exact, checksummed copies of the landing files, with a manifest per partition.

A landing file is deleted only after its raw copy has been read back and its sha256 verified, and
after the manifest names it. Raw is the replay source: re-running an interval whose landing files
are gone finds everything in raw and changes nothing.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from datetime import datetime

from kidjamo.lake.manifest import read_manifest, write_manifest
from kidjamo.lake.partitions import minute_partition, minutes_between, partition_path
from kidjamo.lake.records import is_landing_file, split_records
from kidjamo.lake.storage import Lake


class RawCopyError(RuntimeError):
    """A raw copy did not read back identical to its landing file."""


@dataclass
class RawResult:
    files_copied: int = 0
    files_already_in_raw: int = 0
    bytes_copied: int = 0
    records: int = 0  # records in every raw file of the interval (new and earlier copies)
    raw_files: int = 0
    partitions: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        return {
            "files_copied": self.files_copied,
            "files_already_in_raw": self.files_already_in_raw,
            "bytes_copied": self.bytes_copied,
            "raw_files": self.raw_files,
            "raw_records": self.records,
        }


def _raw_name(name: str, sha256: str, manifest: dict[str, dict]) -> str:
    """The landing name, unless another file of that name (other bytes) is already in raw."""
    entry = manifest.get(name)
    if entry is None or entry["sha256"] == sha256:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{sha256[:12]}{dot}{suffix}"


def landing_to_raw(lake: Lake, start: datetime, end: datetime, *, run_id: str) -> RawResult:
    """Copy every landing file of arrival minutes [start, end) to raw, verify, then delete it."""
    result = RawResult()
    for minute in minutes_between(start, end):
        partition = minute_partition(minute)
        landing = [f for f in lake.list_files(partition_path("landing", minute), recursive=False) if is_landing_file(posixpath.basename(f.path))]
        manifest = read_manifest(lake, minute)
        copied_from: list[str] = []
        for landing_file in landing:
            data = lake.read_bytes(landing_file.path)
            sha256 = hashlib.sha256(data).hexdigest()
            name = _raw_name(posixpath.basename(landing_file.path), sha256, manifest)
            raw_path = partition_path("raw", minute, name)
            if name in manifest:
                result.files_already_in_raw += 1
            else:
                if not (lake.exists(raw_path) and hashlib.sha256(lake.read_bytes(raw_path)).hexdigest() == sha256):
                    lake.write_bytes(raw_path, data)
                    if hashlib.sha256(lake.read_bytes(raw_path)).hexdigest() != sha256:
                        raise RawCopyError(f"raw copy {lake.uri(raw_path)} differs from {lake.uri(landing_file.path)}")
                manifest[name] = {
                    "name": name,
                    "path": raw_path,
                    "landing_path": landing_file.path,
                    "size": len(data),
                    "sha256": sha256,
                    "records": len(split_records(data, name)),
                    "run_id": run_id,
                }
                result.files_copied += 1
                result.bytes_copied += len(data)
            copied_from.append(landing_file.path)
        if copied_from:
            write_manifest(lake, minute, manifest)
            for landing_path in copied_from:
                lake.delete(landing_path)
        if manifest:
            result.partitions.append(partition)
        result.raw_files += len(manifest)
        result.records += sum(entry["records"] for entry in manifest.values())
    return result
