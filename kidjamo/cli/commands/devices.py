"""``kidjamo devices``: device credentials of the ingestion service (stored hashed)."""

from __future__ import annotations

from datetime import timedelta

import click

from ingestion import auth
from kidjamo.warehouse.database import ensure_database


@click.group("devices")
def command() -> None:
    """Register, rotate and revoke the secrets devices use to post readings."""


@command.command()
@click.argument("device_id")
@click.option("--patient", "patient_id", default=None, help="create the device for this registered patient if it is new")
def register(device_id: str, patient_id: str | None) -> None:
    """Issue a secret for DEVICE_ID and print it (shown once; only its hash is stored)."""
    try:
        secret = auth.register_device(ensure_database(), device_id, patient_id=patient_id)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(secret)


@command.command()
@click.argument("device_id")
@click.option("--grace-hours", default=24.0, show_default=True, help="how long the previous secret keeps working")
def rotate(device_id: str, grace_hours: float) -> None:
    """Issue a new secret for DEVICE_ID and print it; the old one expires after the grace period."""
    try:
        secret = auth.rotate_device(ensure_database(), device_id, grace=timedelta(hours=grace_hours))
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(secret)


@command.command()
@click.argument("device_id")
def revoke(device_id: str) -> None:
    """Refuse DEVICE_ID's readings from now on (the service notices within its cache time, 15 s)."""
    try:
        auth.revoke_device(ensure_database(), device_id)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{device_id}: revoked")
