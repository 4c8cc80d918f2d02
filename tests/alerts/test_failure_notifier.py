"""The Airflow failure notifier reports pipeline failures on the alert channels."""

import hashlib
import hmac
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from kidjamo.settings import Settings
from plugins.notifiers import PipelineFailureNotifier
from tests.alerts.servers import WebhookReceiver


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


def failure_context():
    start = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
    return {
        "ti": SimpleNamespace(dag_id="kidjamo_vitals", task_id="to_silver", try_number=2, map_index=-1,
                              log_url="http://localhost:8080/log"),
        "dag_run": SimpleNamespace(run_id="scheduled__2026-11-27T15:32:00+00:00"),
        "exception": RuntimeError("silver gate failed: 60% bad rows"),
        "data_interval_start": start, "data_interval_end": start.replace(minute=32),
    }


def test_a_failed_task_is_posted_signed_to_the_on_call_webhook(tmp_path, webhook):
    settings = Settings(home=tmp_path, notify_channels="webhook,log", webhook_url=webhook.url + "/care",
                        escalation_webhook_url=webhook.url + "/oncall", webhook_secret="s3cret")
    PipelineFailureNotifier(settings=settings)(failure_context())
    (request,) = webhook.requests
    assert request["path"] == "/oncall"
    timestamp = request["headers"]["X-Kidjamo-Timestamp"]
    assert request["headers"]["X-Kidjamo-Signature"] == \
        "sha256=" + hmac.new(b"s3cret", timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    document = request["json"]
    assert document["kind"] == "kidjamo.pipeline_failure"
    assert (document["dag_id"], document["task_id"], document["try_number"]) == ("kidjamo_vitals", "to_silver", 2)
    assert "silver gate failed" in document["exception"]


def test_a_busy_webhook_is_retried(tmp_path, webhook):
    webhook.fail_next = 2
    settings = Settings(home=tmp_path, notify_channels="webhook", webhook_url=webhook.url)
    PipelineFailureNotifier(settings=settings, attempts=3)(failure_context())
    assert len(webhook.requests) == 1


def test_an_unreachable_channel_neither_raises_nor_stops_the_other_channels(tmp_path, caplog):
    settings = Settings(home=tmp_path, notify_channels="webhook,log", webhook_url="http://127.0.0.1:9/down")
    PipelineFailureNotifier(settings=settings, attempts=1)(failure_context())
    assert "kidjamo.pipeline_failure" in caplog.text  # the log channel still reported it
