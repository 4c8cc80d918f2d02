"""``kidjamo patients``: the registry (import) and the RGPD rights of access (export) and erasure (erase)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from kidjamo import database
from kidjamo.settings import get_settings


@click.group("patients")
def command() -> None:
    """The patient registry and patients' rights of access and erasure."""


@command.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(csv_file: Path) -> None:
    """Validate CSV_FILE and upsert it into the registry (safe to run again)."""
    from transforms.registry import RegistryError, import_registry

    try:
        counts = import_registry(csv_file, database.ensure_database(), pseudonym_key=get_settings().pseudonym_key)
    except RegistryError as error:
        raise click.ClickException(str(error))
    click.echo(json.dumps(counts))
