"""``kidjamo clinicians``: provision the care team's logins (database role, care teams, web password)."""

from __future__ import annotations

import secrets

import click

from kidjamo.warehouse import database


@click.group("clinicians")
def command() -> None:
    """Clinician logins of the care-team app."""


@command.command()
@click.argument("login")
@click.option("--team", "teams", multiple=True, required=True, help="care team (repeat for several)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input instead of prompting")
@click.option("--generate", is_flag=True, help="generate a password and print it once")
def add(login: str, teams: tuple[str, ...], password_stdin: bool, generate: bool) -> None:
    """Create or update clinician LOGIN in care team(s) TEAM, with a web password (stored as an argon2id hash)."""
    from care.auth import provision_clinician

    if generate:
        password = secrets.token_urlsafe(12)
    elif password_stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with database.connect(database.database_url(), application_name="kidjamo-cli") as connection:
            provision_clinician(connection, login, list(teams), password)
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"clinician {login} in {', '.join(sorted(set(teams)))}")
    if generate:
        click.echo(f"password: {password}")
