"""``kidjamo patients``: the registry (import) and the RGPD rights of access (export) and erasure (erase)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from kidjamo.warehouse import database
from kidjamo.settings import get_settings


@click.group("patients")
def command() -> None:
    """The patient registry and patients' rights of access and erasure."""


@command.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(csv_file: Path) -> None:
    """Validate CSV_FILE and upsert it into the registry (safe to run again)."""
    from transforms.registry import RegistryError, import_registry

    url = database.ensure_database()
    try:
        counts = import_registry(csv_file, url, pseudonym_key=database.pseudonym_key_for(url))
    except (RegistryError, ValueError) as error:
        raise click.ClickException(str(error))
    click.echo(json.dumps(counts))


@command.command()
@click.argument("patient_id")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder to write (default: ./export-PATIENT_ID)")
def export(patient_id: str, output: Path | None) -> None:
    """Right of access: write everything held on PATIENT_ID (database and lake) to a folder."""
    from transforms.rights import export_patient
    from kidjamo.lake.storage import Lake

    destination = output or Path(f"export-{patient_id}")
    try:
        manifest = export_patient(patient_id, database_url=database.ensure_database(), lake=Lake.from_settings(),
                                  destination=destination, actor=getpass.getuser())
    except LookupError as error:
        raise click.ClickException(str(error))
    click.echo(f"exported {sum(manifest['files'].values())} rows/records of {patient_id} to {destination}/ (see manifest.json)")


@command.command()
@click.argument("patient_id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def erase(patient_id: str, yes: bool) -> None:
    """Right of erasure: revoke PATIENT_ID's devices, erase them from every lake prefix, local state and the database, then verify."""
    from kidjamo.lake.storage import Lake
    from transforms.rights import ErasureIncomplete, erase_patient

    if not yes:
        click.confirm(f"Erase every trace of {patient_id} from the database and the lake? This cannot be undone", abort=True)
    settings = get_settings()
    url = database.ensure_database()
    try:
        summary = erase_patient(patient_id, database_url=url, lake=Lake.from_settings(), pseudonym_key=database.pseudonym_key_for(url),
                                actor=getpass.getuser(), journal_dirs=[settings.home / "ingest" / "journal"],
                                data_docs_dirs=[settings.home / "gx" / "uncommitted"])
    except ErasureIncomplete as error:
        raise click.ClickException(str(error))
    click.echo(json.dumps(summary, indent=1))
