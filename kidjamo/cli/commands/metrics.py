"""``kidjamo metrics``: the Prometheus exporter of the pipeline's state (warehouse and lake)."""

from __future__ import annotations

import click


@click.group("metrics")
def command() -> None:
    """Metrics for Prometheus: freshness, backlog, quarantine, gates, alerts, notifications."""


@command.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=9464, show_default=True, type=int, help="TCP port of /metrics")
def serve(host: str, port: int) -> None:
    """Serve /metrics, read from the warehouse and the lake at each scrape (deploy/prometheus/ scrapes it)."""
    from kidjamo.warehouse.database import database_url
    from kidjamo.logs import configure_logging
    from kidjamo.ops.exporter import ExporterConfig, serve as serve_metrics
    from kidjamo.settings import get_settings
    from kidjamo.lake.storage import Lake
    from transforms.clinical.rules import default_rules

    settings = get_settings()
    configure_logging("exporter", settings.log_level)
    escalation = default_rules().escalation
    config = ExporterConfig(
        database_url=database_url(settings),
        lake=Lake.from_settings(settings),
        escalation_after_s={"escalation": escalation.escalation_channel_minutes * 60,
                            "second_tier": escalation.second_tier_minutes * 60},
    )
    serve_metrics(config, host, port)
