"""Where each layer keeps its data in the lake, and how a step reads and rewrites its partitions.

Every layer (landing included) is laid out the same way:
``<layer>/vitals/dt=YYYY-MM-DD/hh=HH/mm=MM/<file>``, one partition per UTC arrival minute.
:func:`partition_path` is the one function that spells those paths.
"""

from __future__ import annotations

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
