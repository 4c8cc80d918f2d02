"""``kidjamo settings``: every configuration variable with its current value."""

from __future__ import annotations

import click

from kidjamo.settings import Settings, get_settings

SECRET_WORDS = ("secret", "key", "password")


@click.command("settings")
def command() -> None:
    """Print every KIDJAMO_* variable, its current value and what it means (secrets masked)."""
    settings = get_settings()
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is not None and any(word in name for word in SECRET_WORDS):
            value = "********"
        click.echo(f"KIDJAMO_{name.upper():<34} {value!s:<40} {field.description or ''}".rstrip())
