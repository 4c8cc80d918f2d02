"""Point-in-time recovery through S3 with Barman's cloud commands, on a real SeaweedFS server.

The server archives every WAL segment with ``barman-cloud-wal-archive`` (its archive_command); base
backups go up with ``barman-cloud-backup``; the restore comes down with ``barman-cloud-restore`` and
replays WAL fetched by ``barman-cloud-wal-restore``, up to T, into a new server.
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
from kidjamo.warehouse import migrations
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
from kidjamo.ops.backup import base_backup, configure_archiving, list_backups, restore, table_fingerprints, wait_until_archived
from kidjamo.settings import Settings
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from tests.lake.test_s3_lake import s3_endpoint  # noqa: F401 - the SeaweedFS fixture
from transforms.pipeline import process_interval
from transforms.registry import import_registry

pytestmark = pytest.mark.slow


def _process_minute(lake: Lake, url: str, fleet: Fleet, arrival: datetime) -> None:
    write_landing(lake, arrival, fleet.readings(arrival - timedelta(minutes=1), arrival), name="sensors")
    lake.write_bytes(f"landing/vitals/{minute_partition(arrival)}/broken.ndjson", b"{not json\n")
    process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url, run_id=f"s3-pitr-{arrival:%H%M}")


def test_restore_from_s3_to_a_point_in_time(s3_endpoint, kidjamo_home: Path):  # noqa: F811
    workdir = kidjamo_home / "backup-s3"
    shutil.rmtree(workdir, ignore_errors=True)
    settings = Settings(home=workdir / "home", backup_url="s3://kidjamo-lake/warehouse-backups",
                        s3_endpoint_url=s3_endpoint)
    server = EmbeddedPostgres(settings.pg_data_dir)
    restored = None
    try:
        url = server.start()
        migrations.migrate(url)
        configure_archiving(url, settings)
        server.stop()  # archive_mode takes effect at start
        url = server.start()
        fleet = Fleet.generate(3, seed=4)
        import_registry(fleet.write_registry_csv(workdir / "registry.csv"), url, pseudonym_key="test-key")
        lake = Lake(f"file://{workdir / 'lake'}")
        first = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)

        _process_minute(lake, url, fleet, first)
        taken = base_backup(url, settings)
        assert taken.backup_id in [backup.backup_id for backup in list_backups(settings)]
        _process_minute(lake, url, fleet, first + timedelta(minutes=1))
        with psycopg.connect(url) as connection:
            target_time = connection.execute("SELECT clock_timestamp()").fetchone()[0]
        at_target = table_fingerprints(url)
        time.sleep(1.0)
        _process_minute(lake, url, fleet, first + timedelta(minutes=2))
        with psycopg.connect(url) as connection:
            connection.execute("DROP TABLE kidjamo.quarantine")
        wait_until_archived(url, settings)

        restored = restore(settings, target_time, workdir / "restored")
        recovered = table_fingerprints(restored.url())
        assert at_target["kidjamo.quarantine"][0] == 2
        assert recovered == at_target
    finally:
        if restored is not None:
            restored.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
