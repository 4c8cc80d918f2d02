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
    import uvicorn

    from ingestion.service import create_app
    from kidjamo.logs import configure_logging
    from kidjamo.warehouse.database import ensure_database
    from kidjamo.settings import get_settings

    settings = get_settings()
    log_level = log_level or settings.log_level.lower()
    configure_logging("ingestion", log_level)
    app = create_app(settings, ensure_database(settings), state_dir=state_dir)
    # log_config=None: uvicorn's records go through the JSON handler instead of its own text format.
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None, access_log=False, loop="uvloop",
                http="httptools", timeout_graceful_shutdown=10)
