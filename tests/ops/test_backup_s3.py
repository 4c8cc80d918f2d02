"""Point-in-time recovery through S3 with Barman's cloud commands, on a real SeaweedFS server.

The server archives every WAL segment with ``barman-cloud-wal-archive`` (its archive_command); base
backups go up with ``barman-cloud-backup``; the restore comes down with ``barman-cloud-restore`` and
replays WAL fetched by ``barman-cloud-wal-restore``, up to T, into a new server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.storage import Lake
from kidjamo.ops.backup import configure_archiving, restore, table_fingerprints
from kidjamo.settings import Settings
from kidjamo.warehouse import migrations
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
from tests.lake.test_s3_lake import s3_endpoint  # noqa: F401 - the SeaweedFS fixture
from tests.ops.pitr_scenario import backup_then_mistake
from transforms.registry import import_registry

pytestmark = pytest.mark.slow


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
        target_time, at_target = backup_then_mistake(settings, url, lake, fleet)

        restored = restore(settings, target_time, workdir / "restored")
        recovered = table_fingerprints(restored.url())
        assert recovered == at_target
    finally:
        if restored is not None:
            restored.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
