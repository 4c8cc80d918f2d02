"""The audit trail: who did what to the warehouse, appended to ``kidjamo.audit_log``."""

from __future__ import annotations

import json

import psycopg


def set_actor(connection: psycopg.Connection, actor: str | None) -> None:
    """Name the person or process behind this connection in the audit log (setting ``kidjamo.actor``)."""
    if actor:
        connection.execute("SELECT set_config('kidjamo.actor', %s, false)", (actor,))


def record_audit_event(connection: psycopg.Connection, action: str, detail: dict, patient_id: str | None = None) -> int:
    """Append one event to ``kidjamo.audit_log``; return its ``audit_id``."""
    row = connection.execute(
        "SELECT kidjamo.record_audit_event(%s, %s::jsonb, %s)", (action, json.dumps(detail, default=str), patient_id)
    ).fetchone()
    return row[0]
