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
    from kidjamo.settings import get_settings
    from kidjamo.warehouse.database import component_url, ensure_database

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if settings.uses_embedded_database:
        ensure_database(settings)
    # Its own login (kidjamo_authenticator): the app never holds the owner's URL.
    app = create_app(component_url("care", settings), settings)
    uvicorn.run(app, host=host or settings.care_host, port=port or settings.care_port, log_level=log_level,
                access_log=False, timeout_graceful_shutdown=5)

