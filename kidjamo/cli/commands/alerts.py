"""``kidjamo alerts``: list, show, acknowledge and resolve clinical alerts."""

from __future__ import annotations

import getpass
import json
from typing import NamedTuple

import click

from kidjamo.cli.commands import user_errors
from kidjamo.warehouse import database

SEVERITY_COLOURS = {"critical": "red", "high": "yellow", "warning": "cyan", "info": "white"}


@click.group("alerts")
def command() -> None:
    """Clinical alerts: list, show, ack, resolve."""


@command.command("list")
@click.option("--status", type=click.Choice(["active", "open", "acknowledged", "resolved", "all"]), default="active",
              show_default=True, help="active = open and acknowledged")
@click.option("--severity", "min_severity", type=click.Choice(["info", "warning", "high", "critical"]), default="info",
              show_default=True, help="lowest severity shown")
@click.option("--patient", "patient_id", default=None, help="only this patient")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON document per line")
def list_(status: str, min_severity: str, patient_id: str | None, limit: int, as_json: bool) -> None:
    """Alerts, most severe and most recent first."""
    from transforms.alerts.actions import list_alerts

    rows = list_alerts(database.database_url(), status=None if status == "all" else status, min_severity=min_severity,
                       patient_id=patient_id, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    if not rows:
        click.echo("no alerts")
        return
    for row in rows:
        late = f"  LATE by {row['delay_seconds'] / 60:.0f} min" if row["is_late"] else ""
        ack = f"  ack by {row['acknowledged_by']}" if row["acknowledged_by"] and row["status"] == "acknowledged" else ""
        severity = click.style(f"{row['severity']:<8}", fg=SEVERITY_COLOURS[row["severity"]], bold=row["severity"] == "critical")
        click.echo(f"{row['alert_id']:>6}  {severity}  {row['status']:<12}  {row['patient_id']:<14}  "
                   f"{row['rule_id']:<18}  {row['last_reading_at']:%Y-%m-%d %H:%M:%S}Z  x{row['reading_count']}"
                   f"{late}{ack}")


@command.command()
@click.argument("alert_id", type=int)
def show(alert_id: int) -> None:
    """One alert: evidence, lineage (raw file and record), events and notifications, as JSON."""
    from transforms.alerts.actions import AlertActionError, alert_details

    try:
        details = alert_details(database.database_url(), alert_id)
    except AlertActionError as error:
        raise click.ClickException(str(error))
    click.echo(json.dumps(details, default=str, indent=2))


class HandAction(NamedTuple):
    """A command that changes one alert by hand: the function of transforms.alerts.actions that does it,
    the past tense it reports, its help, and the help of its ``--by`` and ``--note`` options."""

    function: str
    done: str
    help: str
    by_help: str
    note_help: str | None


HAND_ACTIONS = {
    "ack": HandAction("acknowledge_alert", "acknowledged", "Acknowledge ALERT_ID: records who and when, and stops its escalation.",
                      "who acknowledges", None),
    "resolve": HandAction("resolve_alert", "resolved", "Resolve ALERT_ID by hand.", "who resolves", "why (kept with the alert)"),
    "escalate": HandAction("escalate_alert", "escalated",
                           "Escalate ALERT_ID now: notify the next tier (escalation channel, then second tier).",
                           "who escalates", "why (sent with the escalation)"),
}


def _hand_action_command(name: str, action: HandAction) -> None:
    """Add ``kidjamo alerts NAME ALERT_ID [--by WHO] [--note TEXT]`` for ``action`` (``--by`` defaults to the login name)."""

    @command.command(name, help=action.help)
    @click.argument("alert_id", type=int)
    @click.option("--by", default=None, help=f"{action.by_help} (default: the login name)")
    @click.option("--note", default=None, help=action.note_help)
    def act(alert_id: int, by: str | None, note: str | None) -> None:
        from transforms.alerts import actions

        with user_errors(actions.AlertActionError):
            result = getattr(actions, action.function)(database.database_url(), alert_id, by=by or getpass.getuser(), note=note)
        click.echo(f"alert {alert_id} {action.done} by {result['by']} at {result['at']}")


for _name, _action in HAND_ACTIONS.items():
    _hand_action_command(_name, _action)
