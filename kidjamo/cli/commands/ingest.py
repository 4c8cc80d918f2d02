"""``kidjamo ingest``: the HTTP ingestion service in front of the landing zone."""

from __future__ import annotations

import click


@click.group("ingest")
def command() -> None:
    """The ingestion service: POST /v1/vitals -> landing (see docs/ingestion.md)."""


@command.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help="group-commit journal [default: $KIDJAMO_HOME/ingest]")
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]),
              help="level of the JSON logs [default: KIDJAMO_LOG_LEVEL, INFO]")
def serve(host: str, port: int, state_dir: str | None, log_level: str) -> None:
    """Serve the ingestion API with uvicorn (one process; put TLS in the reverse proxy in front)."""
    from ingestion.http_server import serve as serve_http
    from ingestion.service import create_app
    from kidjamo.logs import configure_logging
    from kidjamo.warehouse.database import component_url, ensure_component_logins, ensure_database
    from kidjamo.settings import get_settings

    settings = get_settings()
    log_level = log_level or settings.log_level.lower()
    configure_logging("ingestion", log_level)
    ensure_database(settings)
    ensure_component_logins(settings)
    # The service connects as its own login (kidjamo_ingest rights: credentials and the fast path), never as the owner.
    app = create_app(settings, component_url("ingest", settings), state_dir=state_dir)
    serve_http(app, host=host, port=port, log_level=log_level, header_timeout_s=settings.ingest_header_timeout_s,
               limit_concurrency=settings.ingest_limit_concurrency)
