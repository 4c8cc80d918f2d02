"""``kidjamo pipeline``: run the pipeline without Airflow (re-processing, debugging, benchmarks)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from kidjamo.warehouse import database
from kidjamo.lake.storage import Lake


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@click.group("pipeline")
def command() -> None:
    """Run pipeline steps outside Airflow."""


@command.command("run")
@click.option("--start", required=True, help="First arrival minute, ISO-8601 (UTC if no zone), e.g. 2026-11-27T15:31Z.")
@click.option("--end", required=True, help="End of the interval (exclusive), ISO-8601.")
@click.option("--run-id", default=None, help="Run id recorded in kidjamo.pipeline_runs (default: manual__START__END).")
def run(start: str, end: str, run_id: str | None) -> None:
    """Process arrival minutes [START, END) from landing/raw through alerts, in one run."""
    from transforms.pipeline import process_interval

    first, last = _instant(start), _instant(end)
    if last <= first:
        raise click.BadParameter(f"--end {end} must be after --start {start}", param_hint="--end")
    run_id = run_id or f"manual__{first:%Y%m%dT%H%M}__{last:%Y%m%dT%H%M}"
    counts = process_interval(first, last, lake=Lake.from_settings(), database_url=database.ensure_database(), run_id=run_id)
    click.echo(json.dumps(counts, indent=2, default=str))
