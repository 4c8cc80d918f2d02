"""``kidjamo alerts``: list, show, acknowledge and resolve clinical alerts."""

from __future__ import annotations

import getpass
import json

import click

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


def _act(action, alert_id: int, by: str | None, note: str | None, done: str) -> None:
    """Apply ``action`` (acknowledge_alert or resolve_alert) as ``by`` (default: the login name)."""
    from transforms.alerts.actions import AlertActionError

    try:
        result = action(database.database_url(), alert_id, by=by or getpass.getuser(), note=note)
    except AlertActionError as error:
        raise click.ClickException(str(error))
    click.echo(f"alert {alert_id} {done} by {result['by']} at {result['at']}")


@command.command()
@click.argument("alert_id", type=int)
@click.option("--by", default=None, help="who acknowledges (default: the login name)")
@click.option("--note", default=None)
def ack(alert_id: int, by: str | None, note: str | None) -> None:
    """Acknowledge ALERT_ID: records who and when, and stops its escalation."""
    from transforms.alerts.actions import acknowledge_alert

    _act(acknowledge_alert, alert_id, by, note, "acknowledged")


@command.command()
@click.argument("alert_id", type=int)
@click.option("--by", default=None, help="who resolves (default: the login name)")
@click.option("--note", default=None, help="why (kept with the alert)")
def resolve(alert_id: int, by: str | None, note: str | None) -> None:
    """Resolve ALERT_ID by hand."""
    from transforms.alerts.actions import resolve_alert

    _act(resolve_alert, alert_id, by, note, "resolved")


@command.command()
@click.argument("alert_id", type=int)
@click.option("--by", default=None, help="who escalates (default: the login name)")
@click.option("--note", default=None, help="why (sent with the escalation)")
def escalate(alert_id: int, by: str | None, note: str | None) -> None:
    """Escalate ALERT_ID now: notify the next tier (escalation channel, then second tier)."""
    from transforms.alerts.actions import escalate_alert

    _act(escalate_alert, alert_id, by, note, "escalated")
