"""``kidjamo fhir``: Bulk Data export to the lake, validation of an export, and care-system read tokens."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from kidjamo.cli.commands import user_errors
from kidjamo.warehouse import database


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 date or instant (e.g. 2026-11-27T00:00Z)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@click.group("fhir")
def command() -> None:
    """FHIR R4 for care systems: export, validate, clients (see docs/fhir.md)."""


@command.command()
@click.option("--since", required=True, help="export what arrived (lake) or changed (alerts) from this instant, UTC if no zone")
@click.option("--until", default=None, help="up to this instant [default: now]; it is the manifest's transactionTime")
@click.option("--patient", "patient_id", default=None, help="only this patient (registry patient_id)")
@click.option("--granularity", type=click.Choice(["minute", "reading"]), default="minute", show_default=True,
              help="minute: one Observation per vital and patient-minute (gold); reading: one per 30-s reading (silver)")
def export(since: str, until: str | None, patient_id: str | None, granularity: str) -> None:
    """Write a Bulk Data export (NDJSON per resource type + manifest.json) under exports/fhir/ in the lake."""
    from kidjamo.lake.storage import Lake
    from transforms.fhir.export import export_bulk

    arguments = f"--since {since}" + (f" --until {until}" if until else "") + (f" --patient {patient_id}" if patient_id else "")
    with user_errors(LookupError, ValueError):
        result = export_bulk(Lake.from_settings(), database.database_url(), since=_instant(since),
                             until=_instant(until) if until else datetime.now(timezone.utc), patient_id=patient_id,
                             granularity=granularity, request=f"kidjamo fhir export {arguments} --granularity {granularity}")
    for output in result["manifest"]["output"]:
        click.echo(f"{output['type']:<14} {output['count']:>8}  {output['url']}")
    click.echo(f"manifest: {result['export']}/manifest.json")


@command.command()
@click.argument("folder")
def validate(folder: str) -> None:
    """Check every resource of an export (FOLDER = exports/fhir/<export>, relative to the lake)."""
    from kidjamo.lake.storage import Lake
    from transforms.fhir.export import read_export
    from transforms.fhir.profile import resource_problems

    _, resources = read_export(Lake.from_settings(), folder.rstrip("/"))
    failures = 0
    for resource_type, items in resources.items():
        for line, resource in enumerate(items, start=1):
            problems = resource_problems(resource)
            if problems:
                failures += 1
                click.echo(f"{folder}/{resource_type}.ndjson line {line} ({resource_type}/{resource.get('id')}): {'; '.join(problems)}", err=True)
        click.echo(f"{resource_type:<14} {len(items):>8} checked")
    if failures:
        raise click.ClickException(f"{failures} invalid resource(s)")


@command.group()
def clients() -> None:
    """Care systems allowed to read GET /fhir/... (bearer tokens, stored hashed)."""


@clients.command("add")
@click.argument("client_id")
@click.option("--care-team", "care_teams", multiple=True, required=True, help="a care team whose patients it may read (repeat)")
@click.option("--description", default=None)
def add(client_id: str, care_teams: tuple[str, ...], description: str | None) -> None:
    """Register a care system and print its token (shown once: store it in the care system)."""
    from transforms.fhir.clients import ClientError, add_client

    with user_errors(ClientError):
        click.echo(add_client(database.database_url(), client_id, list(care_teams), description=description))


@clients.command("rotate")
@click.argument("client_id")
def rotate(client_id: str) -> None:
    """Give a care system a new token (the old one stops working at once) and print it."""
    from transforms.fhir.clients import ClientError, rotate_client

    with user_errors(ClientError):
        click.echo(rotate_client(database.database_url(), client_id))


@clients.command("revoke")
@click.argument("client_id")
def revoke(client_id: str) -> None:
    """Revoke a care system's token."""
    from transforms.fhir.clients import ClientError, revoke_client

    with user_errors(ClientError):
        revoke_client(database.database_url(), client_id)
    click.echo(f"revoked {client_id}")


@clients.command("list")
def list_() -> None:
    """Every care system, with its care teams and when it was last used (one JSON document per line)."""
    from transforms.fhir.clients import list_clients

    for client in list_clients(database.database_url()):
        click.echo(json.dumps(client, default=str))
