"""``kidjamo db``: the embedded PostgreSQL server and the schema migrations."""

from __future__ import annotations

import os
import shutil

import click

from kidjamo.warehouse import database, migrations
from kidjamo.settings import get_settings


@click.group("db")
def command() -> None:
    """Manage the database: the embedded server and the schema."""


@command.command()
def start() -> None:
    """Start the embedded PostgreSQL (created on first use) and print its URL."""
    settings = get_settings()
    if not settings.uses_embedded_database:
        raise click.ClickException("KIDJAMO_DATABASE_URL is set: the external server is used, nothing to start")
    click.echo(database.embedded_server(settings).start())


@command.command()
def stop() -> None:
    """Stop the embedded PostgreSQL."""
    settings = get_settings()
    if settings.uses_embedded_database:
        database.embedded_server(settings).stop()


@command.command()
def status() -> None:
    """Say whether the database is reachable (exit 1 if not)."""
    settings = get_settings()
    if settings.uses_embedded_database:
        server = database.embedded_server(settings)
        if not server.is_running():
            click.echo(f"embedded PostgreSQL under {server.root}: stopped")
            raise SystemExit(1)
        click.echo(f"embedded PostgreSQL under {server.root}: running at {server.url()}")
    else:
        with database.connect(settings.database_url) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        click.echo(f"external PostgreSQL {version}: reachable")
    click.echo(f"schema revision: {migrations.current_revision(database.database_url(settings)) or 'none'}")


@command.command()
@click.option("--as", "component", type=click.Choice(database.COMPONENTS), default=None,
              help="the URL of a component's own login role (default: the owner's)")
def url(component: str | None) -> None:
    """Print the libpq URL of the database (psql and SQLAlchemy accept it)."""
    click.echo(database.component_url(component) if component else database.database_url())


@command.command()
def migrate() -> None:
    """Apply the schema migrations in sql/ and create the components' login roles (safe to run again).

    Embedded: each component's login gets a random password (kept in $KIDJAMO_HOME/pg/passwords.json).
    External: the logins whose password is in KIDJAMO_<COMPONENT>_DB_PASSWORD (ingest, pipeline,
    analyst, care) are created or get that password.
    """
    url_ = database.ensure_database()
    applied = migrations.migrate(url_)
    click.echo(f"schema at revision {migrations.current_revision(url_)}" + (f" (applied {', '.join(applied)})" if applied else " (up to date)"))
    logins = database.ensure_component_logins() + database.provision_logins_from_environment(url_)
    if logins:
        click.echo(f"login roles ready: {', '.join(logins)}")


@command.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (extra arguments go to psql)."""
    settings = get_settings()
    candidates = []
    if settings.uses_embedded_database:
        candidates.append(str(database.embedded_server(settings).bin_dir / "psql"))
    candidates.append(shutil.which("psql") or "")
    executable = next((c for c in candidates if c and os.path.exists(c)), None)
    if executable is None:
        raise click.ClickException("no psql found")
    os.execv(executable, [executable, database.database_url(settings), *psql_args])


@command.command()
@click.option("--heavy", is_flag=True, help="also the views refreshed on the maintenance schedule (vitals_hourly, patient_daily)")
def refresh(heavy: bool) -> None:
    """Refresh the analytics materialized views CONCURRENTLY (readers are never blocked)."""
    from transforms.views import refresh_views

    url_ = database.ensure_database()
    result = refresh_views(url_, heavy=heavy, pseudonym_key=database.pseudonym_key_for(url_))
    for view, seconds in result["views"].items():
        click.echo(f"analytics.{view}: {seconds:.3f} s")


@command.command()
@click.option("--days-ahead", type=click.IntRange(0, 366), default=7, show_default=True)
def partitions(days_ahead: int) -> None:
    """Create the daily measurement partitions from today (UTC) to DAYS_AHEAD days later."""
    from datetime import datetime, timedelta, timezone

    from transforms.partitions import ensure_partitions

    today = datetime.now(timezone.utc).date()
    created = ensure_partitions(database.ensure_database(), today, today + timedelta(days=days_ahead))
    click.echo(f"{created} partition(s) created up to {today + timedelta(days=days_ahead)}")


@command.command()
@click.option("--keep-days", type=click.IntRange(min=1), default=365, show_default=True, help="retention horizon in days")
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="reference day (default: today, UTC)")
def retention(keep_days: int, as_of) -> None:
    """Drop the measurement partitions older than the retention horizon (never row-by-row DELETE)."""
    from datetime import datetime, timezone

    from transforms.partitions import apply_retention

    day = as_of.date() if as_of else datetime.now(timezone.utc).date()
    dropped = apply_retention(database.ensure_database(), keep_days, day)
    click.echo("\n".join(dropped) if dropped else f"nothing older than {keep_days} days before {day}")


# --- backups and point-in-time recovery (kidjamo/ops/backup.py; README "Recovery") ------------------
def _instant(value: str):
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@command.command()
@click.option("--no-retention", is_flag=True, help="keep every older backup (skip KIDJAMO_BACKUP_RETENTION_DAYS)")
def backup(no_retention: bool) -> None:
    """Take a base backup of the warehouse into KIDJAMO_BACKUP_URL, then apply the retention."""
    from datetime import datetime, timezone

    from kidjamo.ops.backup import apply_retention, backup_url, base_backup

    settings = get_settings()
    taken = base_backup(database.database_url(settings), settings)
    click.echo(f"base backup {taken.backup_id}: {taken.size_bytes:,} bytes in "
               f"{(taken.finished_at - taken.started_at).total_seconds():.1f} s -> {taken.location}")
    if not no_retention:
        deleted = apply_retention(settings, datetime.now(timezone.utc))
        click.echo(f"retention {settings.backup_retention_days} days on {backup_url(settings)}: "
                   + (f"deleted {', '.join(deleted)}" if deleted else "nothing to delete"))


@command.command()
def backups() -> None:
    """List the base backups in KIDJAMO_BACKUP_URL (restorable from when each one finished)."""
    from kidjamo.ops.backup import list_backups

    for item in list_backups(get_settings()):
        click.echo(f"{item.backup_id}  finished {item.finished_at.isoformat()}  {item.size_bytes:>14,} bytes  {item.location}")


@command.command("archive-wal")
def archive_wal() -> None:
    """Archive the WAL continuously: pg_receivewal into a local store (foreground), or archive_command for S3."""
    from kidjamo.ops.backup import backup_url, configure_archiving, wal_receiver_command

    settings = get_settings()
    url = database.database_url(settings)
    if backup_url(settings).startswith("s3://"):
        values = configure_archiving(url, settings)
        click.echo(f"archive_command set ({values['archive_command'].split()[0]}); restart the server once if "
                   "archive_mode was off")
        return
    argv, user = wal_receiver_command(url, settings)
    click.echo(f"receiving WAL into {argv[argv.index('--directory') + 1]} (slot kidjamo_backup); Ctrl-C stops")
    import subprocess

    raise SystemExit(subprocess.run(argv, user=user).returncode)


@command.command()
@click.option("--target-time", required=True, help="the instant to recover, ISO-8601 (UTC if no zone)")
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False), help="a NEW folder for the restored server")
@click.option("--port", type=int, default=None, help="its TCP port [default: a free one]")
@click.option("--stop", is_flag=True, help="stop the restored server once it is consistent (copy files elsewhere later)")
def restore(target_time: str, directory: str, port: int | None, stop: bool) -> None:
    """Point-in-time recovery into a new data directory and server (never over the live one)."""
    from pathlib import Path

    from kidjamo.ops.backup import restore as restore_to

    server = restore_to(get_settings(), _instant(target_time), Path(directory), port=port)
    click.echo(f"restored to {target_time}: {server.url()}  (data in {server.data_dir})")
    if stop:
        server.stop()


@command.command()
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False), help="a NEW folder for the standby")
@click.option("--port", type=int, default=None, help="its TCP port [default: a free one]")
def standby(directory: str, port: int | None) -> None:
    """Create and start a streaming standby of the warehouse (pg_basebackup -R, replication slot kidjamo_standby)."""
    from pathlib import Path

    from kidjamo.ops.backup import create_standby

    settings = get_settings()
    server = create_standby(database.database_url(settings), settings, Path(directory), port=port)
    click.echo(f"standby replaying at {server.url()} (data in {server.data_dir}); `kidjamo db promote --data {directory}` fails over")


@command.command()
@click.option("--data", "directory", required=True, type=click.Path(exists=True, file_okay=False), help="the standby's folder")
def promote(directory: str) -> None:
    """Failover: promote the standby under DIRECTORY to primary; then point KIDJAMO_DATABASE_URL / kidjamo_postgres at it."""
    from pathlib import Path

    from kidjamo.ops.backup import promote as promote_standby
    from kidjamo.warehouse.embedded_pg import EmbeddedPostgres

    settings = get_settings()
    click.echo(f"promoted: {promote_standby(EmbeddedPostgres(Path(directory), bin_dir=settings.pg_bin_dir))}")
