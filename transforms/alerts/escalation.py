"""Escalation: critical alerts still unacknowledged after the rule set's delays get an escalation notice."""

from __future__ import annotations

from datetime import datetime, timedelta

from kidjamo.settings import Settings
from kidjamo.warehouse.database import connect
from transforms.alerts.store import record_events
from transforms.clinical.rules import RuleSet


def escalate(database_url: str, *, as_of: datetime, rules: RuleSet, settings: Settings) -> dict:
    """Escalation notices for critical alerts still unacknowledged 5 and 15 minutes after becoming critical."""
    tiers = [(1, "escalation", rules.escalation.escalation_channel_minutes),
             (2, "second_tier", rules.escalation.second_tier_minutes)]
    counts = {"escalation": 0, "second_tier": 0, "notifications_queued": 0}
    with connect(database_url, application_name="kidjamo-escalation") as connection:
        for tier, audience, minutes in tiers:
            due = connection.execute(
                """
                SELECT alert_id FROM kidjamo.alerts AS a
                WHERE status = 'open' AND severity = 'critical' AND severity_since <= %s
                  AND NOT EXISTS (SELECT 1 FROM kidjamo.alert_events AS e WHERE e.event_key = a.alert_id || ':escalation:' || %s)
                """,
                (as_of - timedelta(minutes=minutes), tier),
            ).fetchall()
            events = [(alert_id, f"{alert_id}:escalation:{tier}", "escalation_notice", "critical",
                       {"tier": tier, "unacknowledged_minutes": minutes}) for (alert_id,) in due]
            counts[audience] = len(events)
            counts["notifications_queued"] += record_events(connection, events, at=as_of, run_id=None,
                                                            settings=settings, audience=audience)
    return counts
