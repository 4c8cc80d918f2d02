"""Notifications: a signed webhook to a real local server, SNS through moto_server, exactly once, retries, escalation."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest

from kidjamo.settings import Settings
from tests.alerts.conftest import alerts, count, query
from tests.alerts.servers import WebhookReceiver, sns_topic_with_queue
from tests.clinical.readings import T0, frame, reading
from transforms.alerts.delivery import deliver_notifications
from transforms.alerts.escalation import escalate
from transforms.alerts.fast_path import raise_fast_path_alert
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules

SECRET = "test-webhook-secret"
END = T0 + timedelta(minutes=1)

RULES = default_rules()


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def settings(tmp_path, webhook):
    return Settings(home=tmp_path, notify_channels="webhook,log", webhook_url=webhook.url + "/care",
                    escalation_webhook_url=webhook.url + "/escalation", second_tier_webhook_url=webhook.url + "/second",
                    webhook_secret=SECRET, notify_min_severity="high", notify_retry_base_s=60)


def raise_fever(url, settings, minute=0, run_id="run"):
    start = T0 + timedelta(minutes=minute)
    rows = [reading(patient_id="p2", device_id="d2", age=8.0, temperature=39.0, at=start)]
    return raise_alerts(url, frame(rows), interval_start=start, interval_end=start + timedelta(minutes=1),
                        run_id=run_id, settings=settings, rules=RULES)


def test_an_opened_critical_alert_is_posted_once_as_signed_json(alerts_db, settings, webhook):
    raise_fever(alerts_db, settings)
    counts = deliver_notifications(alerts_db, now=END, settings=settings)
    assert counts["sent"] == 2  # webhook + log
    (request,) = webhook.requests
    timestamp = request["headers"]["X-Kidjamo-Timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Kidjamo-Signature"] == expected
    assert request["path"] == "/care"
    document = request["json"]
    assert (document["rule_id"], document["severity"], document["event_type"]) == ("fever", "critical", "opened")
    assert document["evidence"]["values"] == {"temperature": 39.0}
    attempts = query(alerts_db, "SELECT outcome, target FROM kidjamo.notification_attempts a"
                     " JOIN kidjamo.notifications n USING (notification_id) WHERE n.channel = 'webhook'")
    assert attempts == [{"outcome": "sent", "target": webhook.url + "/care"}]


def test_rerunning_the_minute_and_delivering_again_sends_nothing_twice(alerts_db, settings, webhook):
    raise_fever(alerts_db, settings)
    deliver_notifications(alerts_db, now=END, settings=settings)
    raise_fever(alerts_db, settings, run_id="retry")  # Airflow task retry / re-run / backfill
    assert deliver_notifications(alerts_db, now=END, settings=settings)["claimed"] == 0
    assert deliver_notifications(alerts_db, now=END + timedelta(hours=1), settings=settings)["claimed"] == 0
    assert len(webhook.requests) == 1


def test_concurrent_deliverers_send_each_notification_once(alerts_db, settings, webhook):
    for minute in range(3):
        rows = [reading(patient_id=p, device_id=d, age=a, temperature=39.0, at=T0 + timedelta(minutes=minute))
                for p, d, a in (("p1", "d1", 30.0), ("p2", "d2", 8.0), ("p3", "d3", 0.4))]
        start = T0 + timedelta(minutes=minute)
        raise_alerts(alerts_db, frame(rows), interval_start=start, interval_end=start + timedelta(minutes=1),
                     run_id=f"r{minute}", settings=settings, rules=RULES)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        deliver_notifications(alerts_db, now=END + timedelta(minutes=3), settings=settings))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [request["headers"]["X-Kidjamo-Delivery"] for request in webhook.requests]
    assert len(keys) == len(set(keys)) == count(alerts_db, "alert_events")
    assert sum(r["sent"] for r in results) == count(alerts_db, "notifications")


def test_a_failing_webhook_is_retried_with_backoff_and_every_attempt_recorded(alerts_db, settings, webhook):
    settings = settings.model_copy(update={"notify_attempts_per_run": 2})
    raise_fever(alerts_db, settings)
    webhook.fail_next = 3
    first = deliver_notifications(alerts_db, now=END, settings=settings)
    assert first["retry_later"] == 1 and webhook.requests == []
    (pending,) = query(alerts_db, "SELECT status, attempts, next_attempt_at, last_error FROM kidjamo.notifications"
                       " WHERE channel = 'webhook'")
    assert pending["status"] == "pending" and pending["attempts"] == 2 and "HTTP 503" in pending["last_error"]
    assert pending["next_attempt_at"] == END + timedelta(seconds=120)  # base 60 s * 2^(2-1)
    assert deliver_notifications(alerts_db, now=END + timedelta(seconds=60), settings=settings)["claimed"] == 0
    second = deliver_notifications(alerts_db, now=END + timedelta(seconds=120), settings=settings)
    assert second["sent"] == 1 and len(webhook.requests) == 1
    outcomes = query(alerts_db, "SELECT attempt, outcome FROM kidjamo.notification_attempts a JOIN kidjamo.notifications n"
                     " USING (notification_id) WHERE n.channel = 'webhook' ORDER BY attempt")
    assert [(o["attempt"], o["outcome"]) for o in outcomes] == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "sent")]


def test_a_notification_gives_up_after_the_maximum_attempts(alerts_db, settings, webhook):
    settings = settings.model_copy(update={"notify_attempts_per_run": 2, "notify_max_attempts": 2})
    raise_fever(alerts_db, settings)
    webhook.fail_next = 10
    assert deliver_notifications(alerts_db, now=END, settings=settings)["failed"] == 1
    assert query(alerts_db, "SELECT status FROM kidjamo.notifications WHERE channel = 'webhook'") == [{"status": "failed"}]


def test_a_claim_left_by_a_crashed_sender_is_retried_with_the_same_delivery_id(alerts_db, settings, webhook):
    raise_fever(alerts_db, settings)
    query(alerts_db, "UPDATE kidjamo.notifications SET status = 'sending', claimed_at = %s RETURNING 1", (END,))
    assert deliver_notifications(alerts_db, now=END + timedelta(seconds=60), settings=settings)["claimed"] == 0
    assert deliver_notifications(alerts_db, now=END + timedelta(minutes=10), settings=settings)["sent"] == 2
    assert webhook.requests[0]["headers"]["X-Kidjamo-Delivery"].endswith(":opened:webhook")


def test_warnings_go_to_the_log_only(alerts_db, settings, webhook):
    rows = [reading(patient_id="p1", device_id="d1", ambient_temp=33.0)]
    raise_alerts(alerts_db, frame(rows), interval_start=T0, interval_end=END, run_id="r", settings=settings, rules=RULES)
    assert query(alerts_db, "SELECT channel FROM kidjamo.notifications") == [{"channel": "log"}]
    deliver_notifications(alerts_db, now=END, settings=settings)
    assert webhook.requests == []


def test_unacknowledged_critical_alert_escalates_at_5_then_15_minutes_once_each(alerts_db, settings, webhook):
    raise_fever(alerts_db, settings)
    assert escalate(alerts_db, as_of=END + timedelta(minutes=4, seconds=59), settings=settings, rules=RULES)["escalation"] == 0
    assert escalate(alerts_db, as_of=END + timedelta(minutes=5), settings=settings, rules=RULES)["escalation"] == 1
    assert escalate(alerts_db, as_of=END + timedelta(minutes=6), settings=settings, rules=RULES)["escalation"] == 0
    assert escalate(alerts_db, as_of=END + timedelta(minutes=15), settings=settings, rules=RULES)["second_tier"] == 1
    assert escalate(alerts_db, as_of=END + timedelta(minutes=30), settings=settings, rules=RULES) == \
        {"escalation": 0, "second_tier": 0, "renotified": 0, "notifications_queued": 0}
    deliver_notifications(alerts_db, now=END + timedelta(minutes=30), settings=settings)
    assert sorted(r["path"] for r in webhook.requests) == ["/care", "/escalation", "/second"]
    escalation = next(r["json"] for r in webhook.requests if r["path"] == "/escalation")
    assert escalation["event_type"] == "escalation_notice" and escalation["audience"] == "escalation"


def test_an_acknowledged_alert_does_not_escalate(alerts_db, settings):
    raise_fever(alerts_db, settings)
    query(alerts_db, "UPDATE kidjamo.alerts SET status = 'acknowledged' RETURNING 1")
    assert escalate(alerts_db, as_of=END + timedelta(minutes=20), settings=settings, rules=RULES)["escalation"] == 0


def test_fast_path_opens_the_critical_alert_and_the_batch_attaches_to_it(alerts_db, settings, webhook):
    payload = {"device_id": "d1", "patient_id": "p1", "timestamp": "2026-11-27T10:00:00Z", "message_id": "m-1",
               "vitals": {"spo2": 83.0, "heart_rate": 80, "temperature": 36.9}}
    alert_id = raise_fast_path_alert(alerts_db, payload, received_at=T0 + timedelta(seconds=1), settings=settings, rules=RULES)
    alert = next(a for a in alerts(alerts_db) if a["alert_id"] == alert_id)
    assert (alert["rule_id"], alert["severity"], alert["source"]) == ("hypoxia_emergency", "critical", "fast_path")
    assert {a["source"] for a in alerts(alerts_db)} == {"fast_path"}
    # The minute batch then sees the same reading: no second alert, no double count, no second notification.
    rows = [reading(patient_id="p1", device_id="d1", spo2=83.0, heart_rate=80.0, temperature=36.9)]
    raise_alerts(alerts_db, frame(rows), interval_start=T0, interval_end=END, run_id="r", settings=settings, rules=RULES)
    emergency = [a for a in alerts(alerts_db) if a["rule_id"] == "hypoxia_emergency"]
    assert len(emergency) == 1 and emergency[0]["reading_count"] == 1
    assert query(alerts_db, "SELECT raw_file FROM kidjamo.alert_readings WHERE rule_id = 'hypoxia_emergency'") == \
        [{"raw_file": "raw/vitals/f.json"}]
    deliver_notifications(alerts_db, now=END, settings=settings)
    assert [r["json"]["rule_id"] for r in webhook.requests].count("hypoxia_emergency") == 1


def test_fast_path_raises_nothing_for_a_normal_reading_nor_an_unknown_patient(alerts_db, settings):
    normal = {"device_id": "d1", "patient_id": "p1", "timestamp": "2026-11-27T10:00:00Z",
              "vitals": {"spo2": 97.0, "heart_rate": 75, "temperature": 36.8, "respiratory_rate": 14}}
    assert raise_fast_path_alert(alerts_db, normal, received_at=T0, settings=settings, rules=RULES) is None
    stranger = {"device_id": "dx", "patient_id": "nobody", "timestamp": "2026-11-27T10:00:00Z",
                "vitals": {"temperature": 39.5}}
    assert raise_fast_path_alert(alerts_db, stranger, received_at=T0, settings=settings, rules=RULES) is None
    assert alerts(alerts_db) == []


def test_sns_notifications_reach_a_subscribed_queue_through_moto_server(alerts_db, tmp_path, monkeypatch):
    with sns_topic_with_queue(monkeypatch) as topic:
        settings = Settings(home=tmp_path, notify_channels="sns", sns_topic_arn=topic.topic_arn, sns_endpoint_url=topic.url)
        raise_fever(alerts_db, settings)
        assert deliver_notifications(alerts_db, now=END, settings=settings)["sent"] == 1
        assert deliver_notifications(alerts_db, now=END, settings=settings)["claimed"] == 0
        messages = topic.messages()
        assert len(messages) == 1
        document = json.loads(json.loads(messages[0]["Body"])["Message"])
        assert (document["rule_id"], document["severity"], document["patient_id"]) == ("fever", "critical", "p2")
