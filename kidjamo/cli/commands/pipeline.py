"""``kidjamo pipeline``: run the pipeline without Airflow (re-processing, debugging, benchmarks)."""

from __future__ import annotations

import json

import click

from kidjamo.warehouse import database
from kidjamo.lake.storage import Lake


@click.group("pipeline")
def command() -> None:
    """Run pipeline steps outside Airflow."""


@command.command("run")
@click.option("--start", required=True, help="First arrival minute, ISO-8601 (UTC if no zone), e.g. 2026-11-27T15:31Z.")
@click.option("--end", required=True, help="End of the interval (exclusive), ISO-8601.")
@click.option("--run-id", default=None, help="Run id recorded in kidjamo.pipeline_runs (default: manual__START__END).")
def run(start: str, end: str, run_id: str | None) -> None:
    """Process arrival minutes [START, END) from landing/raw through alerts, in one run."""
    from transforms.pipeline import parse_instant, process_interval

    try:
        first, last = parse_instant("--start", start, naive_is_utc=True), parse_instant("--end", end, naive_is_utc=True)
    except ValueError as problem:
        raise click.BadParameter(str(problem)) from None
    if last <= first:
        raise click.BadParameter(f"--end {end} must be after --start {start}", param_hint="--end")
    run_id = run_id or f"manual__{first:%Y%m%dT%H%M}__{last:%Y%m%dT%H%M}"
    counts = process_interval(first, last, lake=Lake.from_settings(), database_url=database.ensure_database(), run_id=run_id)
    click.echo(json.dumps(counts, indent=2, default=str))
