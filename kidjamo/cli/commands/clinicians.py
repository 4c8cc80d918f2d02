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
@click.option("--no-password", is_flag=True, help="set no web password (hospital login only; keeps an existing one)")
@click.option("--oidc-subject", help="the clinician's subject (sub claim) at the hospital's identity provider")
@click.option("--oidc-issuer", help="the provider's issuer URL (default: KIDJAMO_CARE_OIDC_ISSUER)")
def add(login: str, teams: tuple[str, ...], password_stdin: bool, generate: bool, no_password: bool,
        oidc_subject: str | None, oidc_issuer: str | None) -> None:
    """Create or update clinician LOGIN in care team(s) TEAM, with a web password (stored as an argon2id hash)
    and/or an identity at the hospital's OpenID Connect provider (--oidc-subject)."""
    from care.auth import provision_clinician
    from kidjamo.settings import get_settings

    if no_password and (generate or password_stdin):
        raise click.UsageError("--no-password excludes --generate and --password-stdin")
    if no_password and not oidc_subject:
        raise click.UsageError("--no-password needs --oidc-subject: the clinician must have a way to log in")
    if no_password:
        password = None
    elif generate:
        password = secrets.token_urlsafe(12)
    elif password_stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    issuer = oidc_issuer or get_settings().care_oidc_issuer
    try:
        with database.connect(database.database_url(), application_name="kidjamo-cli") as connection:
            provision_clinician(connection, login, list(teams), password, oidc_issuer=issuer, oidc_subject=oidc_subject)
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"clinician {login} in {', '.join(sorted(set(teams)))}")
    if oidc_subject:
        click.echo(f"hospital login: subject {oidc_subject} of {issuer}")
    if generate:
        click.echo(f"password: {password}")
