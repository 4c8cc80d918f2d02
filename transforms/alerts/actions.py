"""Clinicians' actions on alerts (``kidjamo alerts …`` and the care-team app): list, show, acknowledge, resolve, escalate."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone

from kidjamo.settings import Settings, get_settings
from kidjamo.warehouse.database import connect
from transforms.alerts.store import record_events


class AlertActionError(ValueError):
    """An acknowledgement or resolution that cannot apply (unknown alert, already resolved…)."""


def list_alerts(database_url: str, *, status: str | None = "active", min_severity: str = "info",
                patient_id: str | None = None, limit: int = 100) -> list[dict]:
    """Alerts, most severe and most recent first. ``status``: active (open + acknowledged), a status, or None (all)."""
    statuses = {"active": ["open", "acknowledged"], None: ["open", "acknowledged", "resolved"]}.get(status, [status])
    with connect(database_url, application_name="kidjamo-cli") as connection:
        cursor = connection.execute(
            """
            SELECT alert_id, patient_id, rule_id, rule_version, severity, status, first_reading_at, last_reading_at,
                   reading_count, is_late, delay_seconds, source, opened_at, acknowledged_by, acknowledged_at,
                   resolved_by, resolved_at, evidence -> 'rule' ->> 'title' AS title
            FROM kidjamo.alerts
            WHERE status = ANY(%s) AND kidjamo.severity_rank(severity) >= kidjamo.severity_rank(%s)
              AND (%s::text IS NULL OR patient_id = %s)
            ORDER BY kidjamo.severity_rank(severity) DESC, last_reading_at DESC LIMIT %s
            """,
            (statuses, min_severity, patient_id, patient_id, limit),
        )
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def alert_details(database_url: str, alert_id: int) -> dict:
    """One alert with its events, the readings behind it and its notifications."""
    with connect(database_url, application_name="kidjamo-cli") as connection:
        def rows(sql: str) -> list[dict]:
            cursor = connection.execute(sql, (alert_id,))
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        alert = rows("SELECT * FROM kidjamo.alerts WHERE alert_id = %s")
        if not alert:
            raise AlertActionError(f"no alert {alert_id}")
        details = alert[0]
        details["events"] = rows("SELECT event_id, event_type, severity, audience, actor, event_at, details"
                                 " FROM kidjamo.alert_events WHERE alert_id = %s ORDER BY event_id")
        details["readings"] = rows("SELECT device_id, measured_at, raw_file, record_index FROM kidjamo.alert_readings"
                                   " WHERE alert_id = %s ORDER BY measured_at")
        details["notifications"] = rows(
            "SELECT n.notification_id, e.event_type, n.channel, n.status, n.attempts, n.sent_at, n.last_error"
            " FROM kidjamo.notifications AS n JOIN kidjamo.alert_events AS e USING (event_id)"
            " WHERE e.alert_id = %s ORDER BY n.notification_id")
    return details


@contextmanager
def _action_connection(database, application_name: str):
    """A transaction for a clinician's action: on a new connection to a URL, or on the caller's connection.

    The care-team app passes its connection, already switched to the clinician's role (SET ROLE):
    row-level security then limits the action to the alerts that clinician may see.
    """
    if isinstance(database, str):
        with connect(database, application_name=application_name) as connection:
            yield connection
    else:
        with database.transaction():
            yield database


def _act(database, alert_id: int, *, action: str, by: str, note: str | None, at: datetime | None,
         settings: Settings | None = None) -> dict:
    at = at or datetime.now(timezone.utc)
    with _action_connection(database, "kidjamo-cli") as connection:
        row = connection.execute("SELECT status, severity FROM kidjamo.alerts WHERE alert_id = %s FOR UPDATE",
                                 (alert_id,)).fetchone()
        if row is None:
            raise AlertActionError(f"no alert {alert_id}")
        status, severity = row
        if status == "resolved":
            raise AlertActionError(f"alert {alert_id} is already resolved")
        if action == "escalation_notice":
            return _escalate_by_hand(connection, alert_id, severity, by=by, note=note, at=at,
                                     settings=settings or get_settings())
        if action == "acknowledged":
            if status == "acknowledged":
                raise AlertActionError(f"alert {alert_id} is already acknowledged")
            connection.execute(
                "UPDATE kidjamo.alerts SET status = 'acknowledged', acknowledged_at = %s, acknowledged_by = %s,"
                " updated_at = %s WHERE alert_id = %s", (at, by, at, alert_id))
            event_key = f"{alert_id}:acknowledged:{severity}"
        else:
            connection.execute(
                "UPDATE kidjamo.alerts SET status = 'resolved', resolved_at = %s, resolved_by = %s, resolution = %s,"
                " updated_at = %s WHERE alert_id = %s", (at, by, note or "resolved by hand", at, alert_id))
            event_key = f"{alert_id}:resolved"
        connection.execute(
            "INSERT INTO kidjamo.alert_events (alert_id, event_key, event_type, severity, actor, details, event_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING",
            (alert_id, event_key, action, severity, by, json.dumps({"note": note}), at))
    return {"alert_id": alert_id, "status": action, "by": by, "at": at.isoformat()}


def _escalate_by_hand(connection, alert_id: int, severity: str, *, by: str, note: str | None, at: datetime,
                      settings: Settings) -> dict:
    """Send the next escalation tier not yet sent (the same events the 5/15-minute clock sends)."""
    sent = {key for (key,) in connection.execute(
        "SELECT event_key FROM kidjamo.alert_events WHERE alert_id = %s AND event_type = 'escalation_notice'",
        (alert_id,))}
    tier = next((tier for tier in (1, 2) if f"{alert_id}:escalation:{tier}" not in sent), None)
    if tier is None:
        raise AlertActionError(f"alert {alert_id} is already escalated to the second tier")
    audience = "escalation" if tier == 1 else "second_tier"
    record_events(connection, [(alert_id, f"{alert_id}:escalation:{tier}", "escalation_notice", severity,
                                {"tier": tier, "by_hand": True, "note": note})],
                  at=at, run_id=None, settings=settings, audience=audience, actor=by)
    return {"alert_id": alert_id, "status": f"escalated to {audience.replace('_', ' ')}", "tier": tier, "by": by,
            "at": at.isoformat()}


def acknowledge_alert(database, alert_id: int, *, by: str, note: str | None = None,
                      at: datetime | None = None) -> dict:
    """Record who acknowledged the alert and when (stops its escalation).

    ``database`` is a URL, or an open connection (the care-team app's, as the clinician).
    """
    return _act(database, alert_id, action="acknowledged", by=by, note=note, at=at)


def resolve_alert(database, alert_id: int, *, by: str, note: str | None = None,
                  at: datetime | None = None) -> dict:
    """Close the alert by hand, recording who, when and why (``database``: URL or open connection)."""
    return _act(database, alert_id, action="resolved", by=by, note=note, at=at)


def escalate_alert(database, alert_id: int, *, by: str, note: str | None = None, at: datetime | None = None,
                   settings: Settings | None = None) -> dict:
    """Escalate the alert by hand now: the next tier (escalation, then second tier) is notified.

    The same event as the automatic escalation of ``transforms.alerts.escalation.escalate``, so each
    tier is sent once. ``database``: URL or open connection.
    """
    return _act(database, alert_id, action="escalation_notice", by=by, note=note, at=at, settings=settings)
