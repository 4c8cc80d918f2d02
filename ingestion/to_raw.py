"""Landing -> raw: byte-exact, checksummed copies of the landing files, with a manifest per partition.

A landing file is deleted only after its raw copy has been read back and its sha256 verified, and
after the manifest names it. Raw is the replay source: re-running an interval whose landing files
are gone finds everything in raw and changes nothing.

Writers of a raw partition (this step in a minute run beside a backfill or a re-process, erasure)
take turns under the partition's advisory lock (:mod:`kidjamo.locks`), so none rewrites the manifest
over another's entries. A raw file the manifest does not name (a writer that bypassed the lock, a
crash between a copy and its manifest) is found by comparing the listing with the manifest and
adopted into it (:func:`reconcile_raw_partition`), so accounting sees every raw record.

Landing is a backlog that is always drained: a minute run also takes every landing file of an
earlier arrival minute (a run Airflow skipped, a failed run, a producer that wrote late) into its
own first minute (:func:`drain_landing_backlog`), named ``backlog-<minute>-<name>`` so that the
original arrival minute stays in the lineage.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from datetime import datetime

from kidjamo.lake.landing import partition_minute
from kidjamo.lake.manifest import read_manifest, write_manifest
from kidjamo.lake.partitions import layer_prefix, minute_partition, minutes_between, partition_path
from kidjamo.lake.records import is_landing_file, split_records
from kidjamo.lake.storage import Lake
from kidjamo.warehouse.locks import PartitionLocks


class RawCopyError(RuntimeError):
    """A raw copy did not read back identical to its landing file."""


class RawLineageError(RuntimeError):
    """The manifest names a raw file that is not in the lake: records are gone and the batch cannot be trusted."""


@dataclass
class RawResult:
    files_copied: int = 0
    files_already_in_raw: int = 0
    bytes_copied: int = 0
    records: int = 0  # records in every raw file of the interval (new and earlier copies)
    raw_files: int = 0
    raw_files_adopted: int = 0  # raw files found outside the manifest and added to it
    backlog_files: int = 0  # landing files of earlier minutes taken into this run
    partitions: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        return {
            "files_copied": self.files_copied,
            "files_already_in_raw": self.files_already_in_raw,
            "bytes_copied": self.bytes_copied,
            "raw_files": self.raw_files,
            "raw_files_adopted": self.raw_files_adopted,
            "backlog_files": self.backlog_files,
            "raw_records": self.records,
        }


def _raw_name(name: str, sha256: str, manifest: dict[str, dict]) -> str:
    """The landing name, unless another file of that name (other bytes) is already in raw."""
    entry = manifest.get(name)
    if entry is None or entry["sha256"] == sha256:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{sha256[:12]}{dot}{suffix}"


def _manifest_entry(name: str, raw_path: str, data: bytes, sha256: str, run_id: str, landing_path: str | None) -> dict:
    return {"name": name, "path": raw_path, "landing_path": landing_path, "size": len(data), "sha256": sha256,
            "records": len(split_records(data, name)), "run_id": run_id}


def _unlisted_raw_files(lake: Lake, minute: datetime, manifest: dict[str, dict]) -> list[str]:
    """Raw files of the partition that its manifest does not name."""
    return [f.path for f in lake.list_files(partition_path("raw", minute), recursive=False)
            if is_landing_file(posixpath.basename(f.path)) and posixpath.basename(f.path) not in manifest]


def _adopt(lake: Lake, minute: datetime, manifest: dict[str, dict], run_id: str) -> int:
    """Add the partition's unlisted raw files to ``manifest`` (in place); return how many."""
    adopted = 0
    for raw_path in _unlisted_raw_files(lake, minute, manifest):
        data = lake.read_bytes(raw_path)
        name = posixpath.basename(raw_path)
        manifest[name] = _manifest_entry(name, raw_path, data, hashlib.sha256(data).hexdigest(), run_id, None)
        manifest[name]["adopted"] = True
        adopted += 1
    return adopted


def reconcile_raw_partition(lake: Lake, minute: datetime, *, run_id: str, locks: PartitionLocks) -> dict[str, dict]:
    """The partition's manifest, after comparing it with the raw listing; return it.

    Unlisted raw files are adopted into the manifest (under the partition's lock); a listed file that
    is missing raises :class:`RawLineageError`, naming it.
    """
    manifest = read_manifest(lake, minute)
    present = {posixpath.basename(f.path) for f in lake.list_files(partition_path("raw", minute), recursive=False)}
    if any(is_landing_file(name) and name not in manifest for name in present):
        with locks.hold(partition_path("raw", minute)):
            manifest = read_manifest(lake, minute)  # as the lock holder before us left it
            if _adopt(lake, minute, manifest, run_id):
                write_manifest(lake, minute, manifest)
    missing = sorted(entry["path"] for name, entry in manifest.items() if name not in present)
    if missing:
        partition = lake.uri(partition_path("raw", minute))
        raise RawLineageError(f"the manifest of {partition} names raw files that are gone: "
                              + ", ".join(missing))
    return manifest


def drain_landing_backlog(lake: Lake, into: datetime, locks: PartitionLocks) -> int:
    """Move every landing file of an arrival minute before ``into`` into ``into``'s landing partition.

    Each source minute is moved under its raw partition's lock, so a run of that minute (a backfill)
    either copied its files first or finds them gone. The copy is written before the original is
    deleted: a crash in between leaves a duplicate (silver's deduplication sets it aside), never a
    loss. Returns the number of files moved.
    """
    waiting: dict[datetime, list[str]] = {}
    for lake_file in lake.list_files(layer_prefix("landing")):
        minute = partition_minute(lake_file.path)
        if minute is not None and minute < into and is_landing_file(posixpath.basename(lake_file.path)):
            waiting.setdefault(minute, []).append(lake_file.path)
    moved = 0
    for minute in sorted(waiting):
        with locks.hold(partition_path("raw", minute)):
            for path in waiting[minute]:
                if not lake.exists(path):
                    continue  # that minute's own run took it meanwhile
                target = partition_path("landing", into, f"backlog-{minute:%Y%m%dT%H%M}-{posixpath.basename(path)}")
                lake.write_bytes(target, lake.read_bytes(path))
                lake.delete(path)
                moved += 1
    return moved


def landing_to_raw(lake: Lake, start: datetime, end: datetime, *, run_id: str, database_url: str | None = None,
                   drain_backlog: bool = False) -> RawResult:
    """Copy every landing file of arrival minutes [start, end) to raw, verify, then delete it.

    With ``database_url``, each raw partition is written under its advisory lock. With
    ``drain_backlog`` (minute runs), landing files of earlier minutes are taken into ``start`` first.
    """
    result = RawResult()
    with PartitionLocks(database_url) as locks:
        if drain_backlog:
            result.backlog_files = drain_landing_backlog(lake, start, locks)
        for minute in minutes_between(start, end):
            with locks.hold(partition_path("raw", minute)):
                _copy_minute(lake, minute, run_id, result)
    return result


def _copy_minute(lake: Lake, minute: datetime, run_id: str, result: RawResult) -> None:
    """Copy one arrival minute's landing files (the caller holds the partition's lock)."""
    partition = minute_partition(minute)
    landing = [f for f in lake.list_files(partition_path("landing", minute), recursive=False)
               if is_landing_file(posixpath.basename(f.path))]
    manifest = read_manifest(lake, minute)
    adopted = _adopt(lake, minute, manifest, run_id)
    result.raw_files_adopted += adopted
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
            manifest[name] = _manifest_entry(name, raw_path, data, sha256, run_id, landing_file.path)
            result.files_copied += 1
            result.bytes_copied += len(data)
        copied_from.append(landing_file.path)
    if copied_from or adopted:
        write_manifest(lake, minute, manifest)
        for landing_path in copied_from:
            lake.delete(landing_path)
    if manifest:
        result.partitions.append(partition)
    result.raw_files += len(manifest)
    result.records += sum(entry["records"] for entry in manifest.values())
