"""Delivery: each queued (event, channel) notification claimed, sent once, every attempt recorded.

Rows are claimed with ``FOR UPDATE SKIP LOCKED``; failures retry with backoff.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kidjamo import notify
from kidjamo.settings import Settings
from kidjamo.warehouse.database import connect

log = logging.getLogger(__name__)


_CLAIM = """
WITH due AS (
    SELECT n.notification_id FROM kidjamo.notifications AS n
    WHERE (n.status = 'pending' AND n.next_attempt_at <= %(now)s)
       OR (n.status = 'sending' AND n.claimed_at < %(stale)s)
    ORDER BY n.next_attempt_at, n.notification_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE kidjamo.notifications AS n SET status = 'sending', claimed_at = %(now)s
FROM due WHERE n.notification_id = due.notification_id
RETURNING n.notification_id
"""

_DOCUMENT = """
SELECT n.notification_id, n.channel, n.attempts, e.event_id, e.event_key, e.event_type, e.audience, e.severity,
       e.event_at, e.details, a.alert_id, a.patient_id, a.rule_id, a.rule_version, a.status, a.first_reading_at,
       a.last_reading_at, a.reading_count, a.is_late, a.delay_seconds, a.evidence, p.care_team,
       ps.pseudonym AS patient_pseudonym
FROM kidjamo.notifications AS n
JOIN kidjamo.alert_events AS e USING (event_id)
JOIN kidjamo.alerts AS a USING (alert_id)
LEFT JOIN kidjamo.patients AS p USING (patient_id)
LEFT JOIN kidjamo.pseudonyms AS ps ON ps.subject = 'patient' AND ps.identifier = a.patient_id
WHERE n.notification_id = ANY(%s)
ORDER BY kidjamo.severity_rank(e.severity) DESC, n.notification_id
"""


def notification_document(row: dict) -> dict:
    """The JSON document sent for an alert event (the same on every channel)."""
    evidence = row["evidence"] or {}
    return {
        "kind": "kidjamo.alert", "event_id": row["event_id"], "event_key": row["event_key"],
        "event_type": row["event_type"], "audience": row["audience"], "event_at": row["event_at"],
        "alert_id": row["alert_id"], "patient_id": row["patient_id"], "patient_pseudonym": row["patient_pseudonym"],
        "care_team": row["care_team"],
        "rule_id": row["rule_id"], "rule_version": row["rule_version"], "severity": row["severity"],
        "status": row["status"], "title": (evidence.get("rule") or {}).get("title"),
        "first_reading_at": row["first_reading_at"], "last_reading_at": row["last_reading_at"],
        "reading_count": row["reading_count"], "is_late": row["is_late"], "delay_seconds": row["delay_seconds"],
        "evidence": evidence, "details": row["details"], "qualifiers": evidence.get("qualifiers") or [],
        "text": notification_text(row["event_type"], evidence),
    }


def notification_text(event_type: str, evidence: dict) -> str:
    """One line for a person: what happened, the values that fired the rule, and how far to trust them."""
    rule = evidence.get("rule") or {}
    values = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in (evidence.get("values") or {}).items()
                       if value is not None)
    text = f"{rule.get('title') or rule.get('id')} ({event_type.replace('_', ' ')})"
    if values:
        text += f": {values}"
    qualifiers = evidence.get("qualifiers") or []
    if qualifiers:
        text += ". Note: " + "; ".join(qualifiers)
    return text


def deliver_notifications(database_url: str, *, settings: Settings, now: datetime | None = None,
                          limit: int = 500) -> dict:
    """Send every due notification once; record each attempt; reschedule failures with backoff.

    Rows are claimed (status ``sending``) in a committed transaction with ``FOR UPDATE SKIP LOCKED``
    before anything is sent, so concurrent or retried tasks never send the same notification; a
    claim left by a crashed sender is retried after ``notify_claim_timeout_s`` with the same
    delivery id (``X-Kidjamo-Delivery`` header, SNS deduplication id) for receivers to deduplicate.
    """
    now = now or datetime.now(timezone.utc)
    stale = now - timedelta(seconds=settings.notify_claim_timeout_s)
    with connect(database_url, application_name="kidjamo-notify") as connection:
        claimed = [row[0] for row in connection.execute(_CLAIM, {"now": now, "stale": stale, "limit": limit})]
    counts = {"claimed": len(claimed), "sent": 0, "retry_later": 0, "failed": 0}
    if not claimed:
        return counts
    # One connection reads the documents and records every outcome, each committed as soon as its
    # notification is handled.
    with connect(database_url, application_name="kidjamo-notify") as connection:
        cursor = connection.execute(_DOCUMENT, (claimed,))
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
        connection.commit()
        for row in rows:
            outcome = _deliver_one(connection, row, now=now, settings=settings)
            counts[outcome] += 1
    return counts


def _deliver_one(connection, row: dict, *, now: datetime, settings: Settings) -> str:
    document = notification_document(row)
    target = notify.target(row["channel"], row["audience"], settings)
    delivery_id = f"{row['event_key']}:{row['channel']}"
    # Subjects show in mail clients and phone notifications: the alert id, never who the patient is.
    subject = f"[{row['severity'].upper()}] {document['title'] or row['rule_id']} — alert {row['alert_id']}"
    if document["qualifiers"]:
        subject += " (" + "; ".join(qualifier.split(":")[0] for qualifier in document["qualifiers"]) + ")"
    attempts: list[tuple[int, str, str]] = []
    attempt_number = row["attempts"]

    def send() -> str:
        nonlocal attempt_number
        attempt_number += 1
        try:
            detail = notify.deliver(target, document, subject=subject, delivery_id=delivery_id,
                                    group_id=row["patient_pseudonym"] or f"alert-{row['alert_id']}", settings=settings)
        except notify.DeliveryError as error:
            attempts.append((attempt_number, "failed", str(error)[:1000]))
            raise
        attempts.append((attempt_number, "sent", detail))
        return detail

    per_run = max(1, min(settings.notify_attempts_per_run, settings.notify_max_attempts - row["attempts"]))
    retrying = Retrying(stop=stop_after_attempt(per_run), wait=wait_exponential(multiplier=0.2, max=2),
                        retry=retry_if_exception_type(notify.DeliveryError), reraise=False)
    try:
        retrying(send)
        sent = True
    except RetryError:
        sent = False
    if sent:
        status, next_attempt, outcome = "sent", None, "sent"
    elif attempt_number >= settings.notify_max_attempts:
        status, next_attempt, outcome = "failed", None, "failed"
    else:
        backoff = min(settings.notify_retry_base_s * 2 ** (attempt_number - 1), 3600)
        status, next_attempt, outcome = "pending", now + timedelta(seconds=backoff), "retry_later"
    try:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO kidjamo.notification_attempts (notification_id, attempt, outcome, target, detail)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(row["notification_id"], number, result, target.address or target.channel, detail)
                 for number, result, detail in attempts],
            )
        connection.execute(
            """
            UPDATE kidjamo.notifications SET status = %s, attempts = %s, claimed_at = NULL,
                   sent_at = CASE WHEN %s = 'sent' THEN now() END,
                   next_attempt_at = coalesce(%s, next_attempt_at), last_error = %s
            WHERE notification_id = %s
            """,
            (status, attempt_number, status, next_attempt, None if sent else attempts[-1][2], row["notification_id"]),
        )
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    if not sent:
        log.warning("notification %s (%s) not delivered: %s", row["notification_id"], delivery_id, attempts[-1][2])
    return outcome
