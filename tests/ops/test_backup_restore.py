"""Point-in-time recovery of the warehouse on the local default: pg_basebackup + pg_receivewal.

A dedicated embedded server runs the real pipeline: a minute, a base backup, another minute, the
instant T is noted, a third minute, then a table is dropped by mistake. Restoring to T into a new
server must give every table of the kidjamo schema the row count and row checksum it had at T.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.storage import Lake
from kidjamo.ops.backup import (BackupError, apply_retention, base_backup, list_backups, restore, table_fingerprints,
                                wal_receiver_command, wal_start_segment)
from kidjamo.settings import Settings
from kidjamo.warehouse import migrations
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
from tests.ops.pitr_scenario import backup_then_mistake
from transforms.registry import import_registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(kidjamo_home: Path) -> Path:
    """A folder under the session's KIDJAMO_HOME (the embedded server's user can reach it, unlike pytest's tmp)."""
    import shutil

    path = kidjamo_home / "backup-tests"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def live_warehouse(workdir: Path):
    """(settings, live server URL, lake, fleet) with WAL streaming into a local backup store."""
    tmp_path = workdir
    settings = Settings(home=tmp_path / "home", backup_url=f"file://{tmp_path / 'backups'}",
                        pg_bin_dir=os.environ.get("KIDJAMO_TEST_PG_BIN_DIR") or None)
    server = EmbeddedPostgres(settings.pg_data_dir, bin_dir=settings.pg_bin_dir)
    url = server.start()
    migrations.migrate(url)
    fleet = Fleet.generate(4, seed=9)
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), url, pseudonym_key="test-key")
    argv, user = wal_receiver_command(url, settings)
    receiver = subprocess.Popen(argv, user=user, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "receivewal.log", "wb"))
    try:
        yield settings, url, Lake(f"file://{tmp_path / 'lake'}"), fleet
    finally:
        receiver.terminate()
        receiver.wait(10)
        server.stop()


def test_restore_to_a_point_in_time_recovers_every_table_as_it_was(live_warehouse, workdir: Path):
    settings, url, lake, fleet = live_warehouse
    target_time, at_target = backup_then_mistake(settings, url, lake, fleet)

    restored = restore(settings, target_time, workdir / "restored")
    try:
        recovered = table_fingerprints(restored.url())
    finally:
        restored.stop()
    assert at_target["kidjamo.measurements"][0] == 2 * 2 * len(fleet.device_ids)  # two minutes, 2 readings each
    assert recovered == at_target


def test_restore_never_writes_over_the_live_server_or_a_used_folder(live_warehouse, workdir: Path):
    settings, url, _, _ = live_warehouse
    base_backup(url, settings)
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    with pytest.raises(BackupError, match="live server"):
        restore(settings, later, settings.pg_data_dir)
    used = workdir / "used"
    (used / "data").mkdir(parents=True)
    (used / "data" / "something").write_text("keep me")
    with pytest.raises(BackupError, match="not empty"):
        restore(settings, later, used)
    with pytest.raises(BackupError, match="no base backup finished before"):
        restore(settings, datetime(2020, 1, 1, tzinfo=timezone.utc), workdir / "too-early")


def test_retention_keeps_what_the_window_needs_and_trims_the_wal(live_warehouse):
    settings, url, _, _ = live_warehouse
    old, older_kept, recent = (base_backup(url, settings, now=datetime.now(timezone.utc) - timedelta(days=days))
                               for days in (9, 8, 0))
    deleted = apply_retention(settings.model_copy(update={"backup_retention_days": 7}), datetime.now(timezone.utc))
    assert deleted == [old.backup_id]  # the 8-day-old one still covers the start of the 7-day window
    remaining = [backup.backup_id for backup in list_backups(settings)]
    assert older_kept.backup_id == remaining[0] and recent.backup_id in remaining
    wal = sorted(path.name for path in (Path(settings.backup_url.removeprefix("file://")) / "wal").iterdir())
    assert wal[0] >= wal_start_segment(Path(older_kept.location))  # the WAL before the oldest kept backup is gone
