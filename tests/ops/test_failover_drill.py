"""Failover drill: a streaming standby (``pg_basebackup -R``) is promoted while minutes keep arriving.

The primary runs the pipeline; the standby replays it. A minute lands (acknowledged to the sensors:
it is in landing) and the primary crashes before processing it. The standby is promoted, the
pipeline is pointed at it and re-processes from raw since the last minute it trusts: every reading
that landed is in the warehouse once, none lost, none doubled.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.storage import Lake
from kidjamo.ops.backup import create_standby, promote
from kidjamo.settings import Settings
from kidjamo.warehouse import migrations
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
from transforms.pipeline import process_interval
from transforms.registry import import_registry

pytestmark = pytest.mark.slow


def _measurements(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT count(*), count(DISTINCT (device_id, measured_at)) FROM kidjamo.measurements").fetchone()


def _wait_replayed(primary_url: str, standby_url: str, timeout_s: float = 60) -> None:
    with psycopg.connect(primary_url, autocommit=True) as primary:
        target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(standby_url, autocommit=True) as standby:
        while time.monotonic() < deadline:
            if standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
                return
            time.sleep(0.1)
    raise AssertionError(f"the standby did not replay up to {target} within {timeout_s} s")


def test_promoted_standby_takes_over_and_nothing_that_landed_is_lost(kidjamo_home: Path):
    workdir = kidjamo_home / "failover-drill"
    shutil.rmtree(workdir, ignore_errors=True)
    settings = Settings(home=workdir / "home")
    primary = EmbeddedPostgres(workdir / "primary")
    standby = None
    try:
        primary_url = primary.start()
        migrations.migrate(primary_url)
        fleet = Fleet.generate(4, seed=13)
        import_registry(fleet.write_registry_csv(workdir / "registry.csv"), primary_url, pseudonym_key="test-key")
        standby = create_standby(primary_url, settings, workdir / "standby")
        lake = Lake(f"file://{workdir / 'lake'}")
        first = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)
        landed = 0
        for index in range(3):  # minutes keep arriving
            arrival = first + timedelta(minutes=index)
            readings = fleet.readings(arrival - timedelta(minutes=1), arrival)
            write_landing(lake, arrival, readings, name="sensors")
            landed += len(readings)
            if index < 2:
                process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=primary_url,
                                 run_id=f"primary-{index}")
        _wait_replayed(primary_url, standby.url())
        assert _measurements(standby.url())[0] == landed - len(readings)  # the standby follows the primary

        primary.stop(mode="immediate")  # the primary dies
        standby_url = promote(standby)
        # The pipeline, pointed at the new primary, re-processes from raw since the last minute it trusts.
        process_interval(first, first + timedelta(minutes=3), lake=lake, database_url=standby_url, run_id="after-failover")
        total, distinct = _measurements(standby_url)
        assert total == distinct == landed
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
        shutil.rmtree(workdir, ignore_errors=True)
