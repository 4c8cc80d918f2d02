"""The point-in-time recovery scenario both backup stores are tested with (local folder and S3).

Pipeline minute, base backup, another minute, T noted (with every table's fingerprint), a third
minute, then a table dropped by mistake; everything archived. The caller restores to T and compares.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import psycopg

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from kidjamo.ops.backup import base_backup, list_backups, table_fingerprints, wait_until_archived
from kidjamo.settings import Settings
from transforms.pipeline import process_interval

DROPPED_TABLE = "kidjamo.quarantine"


def process_minute(lake: Lake, url: str, fleet: Fleet, arrival: datetime) -> None:
    """One arrival minute of the fleet, plus an unparseable line (a quarantine row), through every step."""
    write_landing(lake, arrival, fleet.readings(arrival - timedelta(minutes=1), arrival), name="sensors")
    lake.write_bytes(f"landing/vitals/{minute_partition(arrival)}/broken.ndjson", b"{not json\n")
    process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url, run_id=f"pitr-{arrival:%H%M}")


def backup_then_mistake(settings: Settings, url: str, lake: Lake, fleet: Fleet) -> tuple[datetime, dict]:
    """Run the scenario on the live server ``url``; return (T, the tables' fingerprints at T)."""
    first = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
    process_minute(lake, url, fleet, first)
    taken = base_backup(url, settings)
    assert taken.backup_id in [backup.backup_id for backup in list_backups(settings)]
    process_minute(lake, url, fleet, first + timedelta(minutes=1))
    with psycopg.connect(url) as connection:
        target_time = connection.execute("SELECT clock_timestamp()").fetchone()[0]
    at_target = table_fingerprints(url)
    time.sleep(1.0)  # later commits carry later timestamps than T
    process_minute(lake, url, fleet, first + timedelta(minutes=2))
    with psycopg.connect(url) as connection:
        connection.execute(f"DROP TABLE {DROPPED_TABLE}")  # the mistake
    wait_until_archived(url, settings)
    assert DROPPED_TABLE not in table_fingerprints(url)
    assert at_target[DROPPED_TABLE][0] == 2  # one unparseable line in each of the two minutes before T
    return target_time, at_target
