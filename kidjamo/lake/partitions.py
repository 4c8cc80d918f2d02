"""Where each layer keeps its data in the lake, and how a step reads and rewrites its partitions.

Every layer (landing included) is laid out the same way:
``<layer>/vitals/dt=YYYY-MM-DD/hh=HH/mm=MM/<file>``, one partition per UTC arrival minute.
:func:`partition_path` is the one function that spells those paths.
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from kidjamo.lake.storage import Lake

DATASET = "vitals"


def layer_prefix(layer: str, dataset: str = DATASET) -> str:
    """Lake prefix of a layer: ``landing/vitals``, ``raw/vitals``, ``bronze/vitals`` …"""
    return f"{layer}/{dataset}"


def minute_partition(minute: datetime) -> str:
    """``dt=YYYY-MM-DD/hh=HH/mm=MM`` for a UTC minute."""
    return f"dt={minute:%Y-%m-%d}/hh={minute:%H}/mm={minute:%M}"


def partition_path(layer: str, minute: datetime, file_name: str = "") -> str:
    """``<layer>/vitals/dt=…/hh=…/mm=…`` for an arrival minute, or the path of ``file_name`` in it."""
    prefix = f"{layer_prefix(layer)}/{minute_partition(minute)}"
    return f"{prefix}/{file_name}" if file_name else prefix


def minutes_between(start: datetime, end: datetime) -> list[datetime]:
    """Every whole minute in [start, end)."""
    minute = start.replace(second=0, microsecond=0)
    if minute < start:
        minute += timedelta(minutes=1)
    minutes = []
    while minute < end:
        minutes.append(minute)
        minute += timedelta(minutes=1)
    return minutes


# --- shard layout (KIDJAMO_SHARDS, README "Scaling out") -------------------------------------------
#: ``part-0.shard-2-of-4.parquet``, ``bronze.shard-joined-of-4.parquet``, ``part-0.shard-2-of-4.from-1.parquet``.
_SHARD_NAME = re.compile(r"^(?P<stem>.+)\.shard-(?P<label>\d+|joined)-of-(?P<shards>\d+)(?:\.from-\d+)?\.(?P<ext>[^.]+)$")


def shard_file_name(file_name: str, shard: int | None, shards: int, source: int | None = None) -> str:
    """The name of ``file_name`` in a minute partition written by shard ``shard`` of ``shards``.

    One shard (the default) is today's layout: the name itself. With several, each shard writes its
    own file (``part-0.shard-2-of-4.parquet``); ``shard=None`` is a step that joins the shards
    (``…shard-joined-of-4…``); ``source`` names the to_bronze task that routed the rows there
    (``…shard-2-of-4.from-1…``): to_bronze splits by raw file, the later steps by patient.
    """
    if shards == 1:
        return file_name
    stem, extension = file_name.rsplit(".", 1)
    label = "joined" if shard is None else str(shard)
    origin = "" if source is None else f".from-{source}"
    return f"{stem}.shard-{label}-of-{shards}{origin}.{extension}"


def is_layer_file(base_name: str, file_name: str) -> bool:
    """Whether a partition's file ``base_name`` holds rows of ``file_name``, in any shard layout."""
    if base_name == file_name:
        return True
    match = _SHARD_NAME.match(base_name)
    return bool(match) and f"{match['stem']}.{match['ext']}" == file_name


def _shard_count(base_name: str) -> int:
    match = _SHARD_NAME.match(base_name)
    return int(match["shards"]) if match else 1


def remove_other_layouts(lake: Lake, layer: str, start: datetime, end: datetime, file_name: str, shards: int) -> int:
    """Delete ``file_name``'s files of [start, end) written with another shard count than ``shards``.

    A minute re-processed with a new ``KIDJAMO_SHARDS`` must not keep the old layout's rows beside
    the new ones (a reader of the partition would count them twice). Files of the same shard count
    are never touched, so the shards of one run can call this concurrently. Returns how many went.
    """
    removed = 0
    for minute in minutes_between(start, end):
        for lake_file in lake.list_files(partition_path(layer, minute), recursive=False):
            base_name = posixpath.basename(lake_file.path)
            if is_layer_file(base_name, file_name) and _shard_count(base_name) != shards:
                lake.delete(lake_file.path)
                removed += 1
    return removed


def write_partitions(lake: Lake, layer: str, table: pa.Table, start: datetime, end: datetime, file_name: str) -> int:
    """Rewrite ``file_name`` in every arrival-minute partition of [start, end) of a layer.

    A minute with no rows has its file removed, so re-running an interval always leaves exactly
    what this run computed. Returns the number of files written.
    """
    written = 0
    minute_column = table.column("arrival_minute").to_numpy() if table.num_rows else np.array([], dtype="datetime64[us]")
    order = np.argsort(minute_column, kind="stable")
    sorted_minutes = minute_column[order]
    for minute in minutes_between(start, end):
        key = np.datetime64(minute.replace(tzinfo=None), "us")
        first, last = np.searchsorted(sorted_minutes, key, "left"), np.searchsorted(sorted_minutes, key, "right")
        path = partition_path(layer, minute, file_name)
        if last > first:
            lake.write_parquet(path, table.take(pa.array(order[first:last])))
            written += 1
        else:
            lake.delete(path)
    return written


def read_partitions(lake: Lake, layer: str, start: datetime, end: datetime, file_name: str, schema: pa.Schema) -> pa.Table:
    """Concatenate ``file_name`` of every arrival-minute partition of [start, end) of a layer."""
    paths = [partition_path(layer, minute, file_name) for minute in minutes_between(start, end)]
    return lake.read_parquet([p for p in paths if lake.exists(p)], schema)
