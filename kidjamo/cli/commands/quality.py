"""``kidjamo quality``: data-quality reports (Great Expectations Data Docs)."""

from __future__ import annotations

import click

from kidjamo.settings import get_settings
from kidjamo.lake.storage import Lake


@click.group("quality")
def command() -> None:
    """Data quality: the gates' validation results."""


@command.command("docs")
@click.option("--limit", default=200, show_default=True, help="Most recent validations per suite to render.")
def docs(limit: int) -> None:
    """Build the Great Expectations Data Docs site under $KIDJAMO_HOME/gx and print its index."""
    from expectations.data_docs import build_data_docs

    settings = get_settings()
    index = build_data_docs(Lake.from_settings(settings), settings.home / "gx", limit=limit)
    click.echo(f"file://{index}")
