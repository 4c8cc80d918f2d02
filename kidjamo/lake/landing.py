"""The landing zone as a backlog: what is waiting there, and since when.

Landing is meant to be empty a minute or two after anything arrives: each minute run copies its
minute to raw and also drains every older landing partition (``ingestion.to_raw``). What is still
there is a backlog — skipped runs, a failed run, a late producer — and its size and age are what an
operator alarms on (see :func:`landing_backlog`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kidjamo.lake.partitions import layer_prefix
from kidjamo.lake.records import is_in_progress, is_landing_file
from kidjamo.lake.storage import Lake
_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hh=(\d{2})/mm=(\d{2})/")


def partition_minute(path: str) -> datetime | None:
    """The arrival minute of a lake path ``…/dt=YYYY-MM-DD/hh=HH/mm=MM/<name>``, or None."""
    match = _PARTITION.search(path)
    if match is None:
        return None
    day, hour, minute = match.groups()
    return datetime.strptime(f"{day} {hour}:{minute}", "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class LandingBacklog:
    """Landing files whose arrival minute has ended, still waiting for a run to copy them to raw."""

    files: int
    bytes: int
    minutes: int  # arrival minutes with files waiting
    oldest_minute: datetime | None  # the arrival minute of the oldest waiting file
    oldest_age_s: float  # seconds since that minute ended (0 when nothing waits)
    unpublished_parts: int  # in-progress files (``_…``) of ended minutes: a writer that cannot publish


def landing_backlog(lake: Lake, now: datetime) -> LandingBacklog:
    """What waits in landing at ``now``: files of arrival minutes that have ended, and the oldest one's age.

    A healthy pipeline keeps ``oldest_age_s`` under about two minutes (the minute's run starts when
    it ends); an alarm on a few minutes catches skipped or failing runs.
    """
    current = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    files = size = parts = 0
    oldest: datetime | None = None
    minutes: set[datetime] = set()
    for lake_file in lake.list_files(layer_prefix("landing")):
        minute = partition_minute(lake_file.path)
        name = posixpath.basename(lake_file.path)
        if minute is None or minute >= current:
            continue
        if is_landing_file(name):
            files += 1
            size += lake_file.size
            minutes.add(minute)
            oldest = minute if oldest is None else min(oldest, minute)
        elif is_in_progress(name) and not name.startswith("."):
            parts += 1
    age = max((now - (oldest + timedelta(minutes=1))).total_seconds(), 0.0) if oldest is not None else 0.0
    return LandingBacklog(files, size, len(minutes), oldest, age, parts)
