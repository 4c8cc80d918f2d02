"""``kidjamo simulate``: a fleet of wearables posting to the ingestion service, or writing to landing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from ingestion.simulator.fleet import SCENARIO_DOC, SCENARIO_KINDS, Fleet, Scenario

FOREVER = timedelta(days=3650)


def demo_schedule(fleet: Fleet, start: datetime) -> list[Scenario]:
    """One episode of each kind, a patient each, in the first half hour (what ``make run`` shows)."""
    schedule = [  # kind, minutes after start, duration in minutes
        ("hypoxia", 2, 4), ("fever", 3, 15), ("pain_crisis", 4, 10), ("acs", 6, 8), ("heat_dehydration", 5, 10),
        ("flatline", 2, 8), ("low_battery", 1, 20), ("dropout", 3, 8), ("duplicates", 1, 5), ("malformed", 2, 3),
        ("clock_skew", 4, 3),
    ]
    return [
        Scenario(kind, fleet.patient_ids[1 + i], start + timedelta(minutes=offset), start + timedelta(minutes=offset + minutes))
        for i, (kind, offset, minutes) in enumerate(schedule)
        if 1 + i < len(fleet)
    ]


def parse_scenario(text: str, fleet: Fleet, start: datetime) -> Scenario:
    """``KIND:PATIENT:START_MIN:MINUTES`` (PATIENT is a patient id or a 1-based fleet position)."""
    try:
        kind, patient, offset, minutes = text.split(":")
        patient_id = fleet.patient_ids[int(patient) - 1] if patient.isdigit() else patient
        begin = start + timedelta(minutes=float(offset))
        return Scenario(kind, patient_id, begin, begin + timedelta(minutes=float(minutes)))
    except (ValueError, IndexError) as error:
        raise click.BadParameter(f"{text!r}: expected KIND:PATIENT:START_MIN:MINUTES ({error})", param_hint="--scenario") from None


@click.command("simulate", epilog="Scenario kinds: " + "; ".join(f"{k} - {SCENARIO_DOC[k]}" for k in SCENARIO_KINDS))
@click.option("--patients", default=20, show_default=True, help="fleet size (one device per patient)")
@click.option("--seed", default=0, show_default=True, help="the same seed gives the same fleet and readings")
@click.option("--mode", type=click.Choice(["http", "landing"]), default="http", show_default=True,
              help="post to the ingestion service, or write NDJSON files straight to landing")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="ingestion service (http mode)")
@click.option("--realtime/--fast", default=True, show_default=True, help="wall-clock pace, or as fast as possible")
@click.option("--minutes", type=float, default=None, help="simulated minutes [default: forever in real time]")
@click.option("--start", "start_text", default=None, help="first reading time, ISO-8601 [default: now; --fast: now - minutes]")
@click.option("--step-seconds", default=5, show_default=True, help="readings are sent in slices of this length")
@click.option("--provision", is_flag=True, help="import the fleet's registry and issue device credentials first")
@click.option("--secrets", "secrets_path", type=click.Path(dir_okay=False), default=None,
              help="device secrets JSON [default: $KIDJAMO_HOME/simulator/secrets.json]")
@click.option("--registry", "registry_path", type=click.Path(dir_okay=False), default=None, help="also write the registry CSV here")
@click.option("--scenario", "scenario_texts", multiple=True, metavar="KIND:PATIENT:START_MIN:MINUTES",
              help="inject an episode (repeatable), e.g. fever:3:2:15")
@click.option("--demo-scenarios", is_flag=True, help="inject one episode of every kind in the first half hour")
@click.option("--hypoxia-patient", "--hypoxia", "hypoxia_patient", is_flag=True, help="the first patient has SpO2 < 85 throughout")
@click.option("--progress/--no-progress", default=True, show_default=True, help="live progress display")
def command(patients, seed, mode, url, realtime, minutes, start_text, step_seconds, provision, secrets_path, registry_path,
            scenario_texts, demo_scenarios, hypoxia_patient, progress) -> None:
    """Simulate a fleet of wearable sensors (see docs/ingestion.md)."""
    from kidjamo.settings import get_settings

    settings = get_settings()
    fleet = Fleet.generate(patients, seed=seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if minutes is None and not realtime:
        raise click.UsageError("--fast needs --minutes")
    duration = FOREVER if minutes is None else timedelta(minutes=minutes)
    if start_text:
        start = datetime.fromisoformat(start_text)
        start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    else:
        start = now if realtime else now - duration
    scenarios = [parse_scenario(text, fleet, start) for text in scenario_texts]
    if demo_scenarios:
        scenarios += demo_schedule(fleet, start)

    secrets_path = Path(secrets_path) if secrets_path else settings.home / "simulator" / "secrets.json"
    if registry_path:
        fleet.write_registry_csv(registry_path)
    if provision:
        from ingestion.simulator.fleet import provision_fleet
        from kidjamo.warehouse.database import ensure_database, pseudonym_key_for

        database_url = ensure_database(settings)
        provision_fleet(database_url, fleet, secrets_path, pseudonym_key=pseudonym_key_for(database_url, settings))
        click.echo(f"provisioned {len(fleet)} patients and devices; secrets in {secrets_path}", err=True)
    if duration <= timedelta(0):
        return
    sender = _sender(mode, url, secrets_path, settings)
    stats = asyncio.run(_run(fleet, sender, start, start + duration, realtime, step_seconds, scenarios, hypoxia_patient, progress))
    click.echo(" ".join(f"{name}={value}" for name, value in stats.as_dict().items()))


def _sender(mode: str, url: str, secrets_path: Path, settings):
    from ingestion.simulator.fleet import read_secrets
    from ingestion.simulator.senders import HttpSender, LandingSender
    from kidjamo.lake.storage import Lake

    if mode == "landing":
        return LandingSender(Lake.from_settings(settings))
    if not secrets_path.exists():
        raise click.UsageError(f"no device secrets at {secrets_path}: run with --provision (or --secrets PATH)")
    return HttpSender(url, read_secrets(secrets_path), spool_dir=settings.home / "simulator" / "spool")


async def _run(fleet, sender, start, end, realtime, step_seconds, scenarios, hypoxia_patient, show_progress):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ingestion.simulator.senders import run_simulation

    forever = end - start >= FOREVER
    columns = [TextColumn("[bold]simulate"), *([] if forever else [BarColumn()]), TextColumn("{task.fields[stats]}"), TimeElapsedColumn()]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("simulate", total=None, stats="starting")

        def on_step(done: int, total: int, stats) -> None:
            summary = (f"{done}/{'∞' if forever else total} slices  generated {stats.generated}  accepted {stats.accepted}  "
                       f"duplicates {stats.duplicates}  rejected {stats.rejected}  retries {stats.retries}  spooled {stats.spooled}")
            progress.update(task, completed=done, total=None if forever else total, stats=summary)

        try:
            return await run_simulation(fleet, sender, start=start, end=end, realtime=realtime, step_s=step_seconds,
                                        scenarios=scenarios, hypoxia_patient=hypoxia_patient, on_step=on_step)
        finally:
            await sender.close()
