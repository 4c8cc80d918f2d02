"""``kidjamo care``: the care team's screen (ward board, patient pages, alert queue) in the browser."""

from __future__ import annotations

import logging

import click


@click.group("care")
def command() -> None:
    """The care-team web app (see docs/care-team.md)."""


@command.command()
@click.option("--host", default=None, help="address to listen on [default: KIDJAMO_CARE_HOST, 127.0.0.1]")
@click.option("--port", default=None, type=int, help="TCP port [default: KIDJAMO_CARE_PORT, 8090]")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def serve(host: str | None, port: int | None, log_level: str) -> None:
    """Serve the care-team app with uvicorn (put TLS in the reverse proxy in front)."""
    import uvicorn

    from care.app import create_app
    from kidjamo.warehouse.database import ensure_database
    from kidjamo.settings import get_settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    # With its own login URL the app needs nothing else (compose: it never sees the owner's URL).
    app = create_app(settings.care_database_url or ensure_database(settings), settings)
    uvicorn.run(app, host=host or settings.care_host, port=port or settings.care_port, log_level=log_level,
                access_log=False, timeout_graceful_shutdown=5)


@command.command("app-password")
def app_password() -> None:
    """Set the password of the app's database login (kidjamo_authenticator), read from standard input.

    Run as the database owner (``kidjamo db migrate``'s URL); the clear text never reaches the
    server, only its SCRAM verifier.
    """
    from psycopg import sql

    from kidjamo.warehouse import database
    from kidjamo.warehouse.roles import AUTHENTICATOR, scram_verifier

    password = click.get_text_stream("stdin").readline().rstrip("\n")
    if len(password) < 16:
        raise click.ClickException("the app's database password must have at least 16 characters")
    with database.connect(database.database_url(), application_name="kidjamo-cli") as connection:
        connection.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(AUTHENTICATOR),
                                                                       sql.Literal(scram_verifier(password))))
    click.echo(f"password of {AUTHENTICATOR} set")
