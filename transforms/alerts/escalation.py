"""Escalation: unacknowledged critical and high alerts get escalation notices after the rule set's
delays; acknowledged alerts whose rule still matches are notified again once per period."""

from __future__ import annotations

from datetime import datetime, timedelta

from kidjamo.settings import Settings
from kidjamo.warehouse.database import connect
from transforms.alerts.store import record_events
from transforms.clinical.rules import RuleSet


def escalate(database_url: str, *, as_of: datetime, rules: RuleSet, settings: Settings) -> dict:
    """Escalation notices for unacknowledged alerts, and reminders for acknowledged ones that persist.

    A critical alert unacknowledged 5 and 15 minutes after becoming critical (a high one 15 and 60,
    ``rules.yaml`` escalation) is notified on the escalation channel, then to the second tier. An
    acknowledged alert whose rule still matched within the last ``acknowledged_renotify_minutes``
    (and had no normal reading since) is notified again to the care team once per period.
    """
    counts = {"escalation": 0, "second_tier": 0, "renotified": 0, "notifications_queued": 0}
    with connect(database_url, application_name="kidjamo-escalation") as connection:
        for severity in ("critical", "high"):
            # The critical keys keep their first form (':escalation:1'): notices already sent stay sent.
            key_infix = ":escalation:" if severity == "critical" else f":escalation:{severity}:"
            for tier, audience, minutes in rules.escalation.tiers(severity):
                due = connection.execute(
                    """
                    SELECT alert_id FROM kidjamo.alerts AS a
                    WHERE status = 'open' AND severity = %s AND severity_since <= %s
                      AND NOT EXISTS (SELECT 1 FROM kidjamo.alert_events AS e WHERE e.event_key = a.alert_id || %s || %s)
                    """,
                    (severity, as_of - timedelta(minutes=minutes), key_infix, str(tier)),
                ).fetchall()
                events = [(alert_id, f"{alert_id}{key_infix}{tier}", "escalation_notice", severity,
                           {"tier": tier, "unacknowledged_minutes": minutes}) for (alert_id,) in due]
                counts[audience] += len(events)
                counts["notifications_queued"] += record_events(connection, events, at=as_of, run_id=None,
                                                                settings=settings, audience=audience)
        period = timedelta(minutes=rules.escalation.acknowledged_renotify_minutes)
        persisting = connection.execute(
            """
            SELECT r.* FROM (
                SELECT a.alert_id, a.severity, a.acknowledged_at, a.acknowledged_by,
                       a.alert_id || ':renotify:' || floor(extract(epoch FROM a.acknowledged_at))::bigint || ':'
                       || floor(extract(epoch FROM (%(as_of)s - a.acknowledged_at)) / %(period_s)s)::integer AS event_key,
                       floor(extract(epoch FROM (%(as_of)s - a.acknowledged_at)) / %(period_s)s)::integer AS periods
                FROM kidjamo.alerts AS a
                WHERE a.status = 'acknowledged' AND a.acknowledged_at <= %(as_of)s - %(period)s
                  AND CASE WHEN a.rule_id = 'sensor_silent'
                           THEN NOT EXISTS (SELECT 1 FROM kidjamo.device_last_seen AS s
                                            WHERE s.device_id = a.evidence ->> 'device_id'
                                              AND s.last_measured_at > a.last_reading_at)
                           ELSE a.last_reading_at > %(as_of)s - %(period)s
                                AND (a.normal_reading_at IS NULL OR a.normal_reading_at < a.last_reading_at) END
            ) AS r
            WHERE NOT EXISTS (SELECT 1 FROM kidjamo.alert_events AS e WHERE e.event_key = r.event_key)
            """,
            {"as_of": as_of, "period": period, "period_s": period.total_seconds()},
        ).fetchall()
        events = [(alert_id, event_key, "renotified", severity,
                   {"acknowledged_at": acknowledged_at.isoformat(), "acknowledged_by": acknowledged_by,
                    "minutes_since_acknowledged": periods * rules.escalation.acknowledged_renotify_minutes,
                    "reason": "the rule still matches after the acknowledgement"})
                  for alert_id, severity, acknowledged_at, acknowledged_by, event_key, periods in persisting]
        counts["renotified"] = len(events)
        counts["notifications_queued"] += record_events(connection, events, at=as_of, run_id=None, settings=settings)
    return counts
