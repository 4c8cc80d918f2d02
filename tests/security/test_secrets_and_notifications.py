"""Secrets and notifications: weak pseudonym keys refused in production, webhooks signed with a
timestamp and never sent in clear off loopback, no patient identifier in SNS subjects or the log."""

from __future__ import annotations

import json
import logging
import secrets as random
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from click.testing import CliRunner

from kidjamo import notify
from kidjamo.cli import main
from kidjamo.lake.storage import Lake
from kidjamo.settings import Settings
from tests.alerts.servers import WebhookReceiver, sns_topic_with_queue
from tests.clinical.readings import T0, frame, reading
from transforms.alerts.delivery import deliver_notifications
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules
from transforms.pipeline import process_interval
from transforms.views import refresh_views

END = T0 + timedelta(minutes=1)
STRONG_KEY = random.token_urlsafe(48)


# --- the pseudonym key ----------------------------------------------------------------------------------
@pytest.fixture
def external_home(tmp_path, monkeypatch):
    """A KIDJAMO_HOME without an embedded server: the session's PostgreSQL is then an external database."""
    monkeypatch.setenv("KIDJAMO_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("KIDJAMO_PSEUDONYM_KEY", raising=False)
    return tmp_path / "elsewhere"


def run_an_empty_minute(url: str, tmp_path) -> dict:
    minute = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
    return process_interval(minute, minute + timedelta(minutes=1), lake=Lake(f"file://{tmp_path / 'lake'}"), database_url=url,
                            run_id="key-check")


@pytest.mark.parametrize("key, problem", [
    (None, "public default"),
    ("change-me-change-me-change-me-change-me", "change-me placeholder"),
    ("CHANGEME" + "x" * 40, "change-me placeholder"),
    ("short-but-random-" + random.token_hex(4), "below 32"),
])
def test_a_pipeline_run_refuses_to_start_with_a_weak_key_against_an_external_database(migrated_url, external_home, monkeypatch,
                                                                                         tmp_path, key, problem):
    if key is not None:
        monkeypatch.setenv("KIDJAMO_PSEUDONYM_KEY", key)
    with pytest.raises(ValueError, match=f"KIDJAMO_PSEUDONYM_KEY .*{problem}"):
        run_an_empty_minute(migrated_url, tmp_path)


def test_a_strong_pseudonym_key_is_accepted_against_an_external_database(migrated_url, external_home, monkeypatch, tmp_path):
    monkeypatch.setenv("KIDJAMO_PSEUDONYM_KEY", STRONG_KEY)
    assert "refresh_views" in run_an_empty_minute(migrated_url, tmp_path)


def test_the_embedded_development_database_keeps_the_default_key(migrated_url, monkeypatch, tmp_path):
    monkeypatch.delenv("KIDJAMO_PSEUDONYM_KEY", raising=False)
    assert "refresh_views" in run_an_empty_minute(migrated_url, tmp_path)  # the session's KIDJAMO_HOME owns this server


def test_the_registry_import_command_refuses_the_default_key_with_a_database_url(migrated_url, tmp_path):
    registry = tmp_path / "registry.csv"
    registry.write_text("patient_id,birth_date,sex,genotype,device_id,care_team,baseline_spo2\n"
                        "sec-p1,2015-03-02,F,HbSS,sec-d1,team-a,96\n")
    result = CliRunner().invoke(main, ["patients", "import", str(registry)],
                                env={"KIDJAMO_HOME": str(tmp_path / "home"), "KIDJAMO_DATABASE_URL": migrated_url,
                                     "KIDJAMO_PSEUDONYM_KEY": None})
    assert result.exit_code != 0 and "KIDJAMO_PSEUDONYM_KEY is the public default" in result.output
    with psycopg.connect(migrated_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.patients WHERE patient_id = 'sec-p1'").fetchone()[0] == 0


# --- webhooks ---------------------------------------------------------------------------------------------
@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


def test_a_webhook_is_signed_over_a_timestamp_and_a_replay_is_refused(webhook, tmp_path):
    settings = Settings(home=tmp_path, webhook_secret="s3cret-for-the-receiver")
    notify.deliver(notify.Target("webhook", webhook.url + "/care"), {"alert_id": 7}, subject="s", delivery_id="d1", settings=settings)
    (request,) = webhook.requests
    notify.verify_webhook(request["body"], request["headers"], "s3cret-for-the-receiver")  # genuine: accepted
    with pytest.raises(ValueError, match="replay window"):  # the same request, captured and replayed 10 minutes later
        notify.verify_webhook(request["body"], request["headers"], "s3cret-for-the-receiver", now=time.time() + 600)
    with pytest.raises(ValueError, match="wrong signature"):  # the same signature over a changed body
        notify.verify_webhook(request["body"].replace(b"7", b"8"), request["headers"], "s3cret-for-the-receiver")
    moved = {**request["headers"], "X-Kidjamo-Timestamp": str(int(time.time()) + 1)}
    with pytest.raises(ValueError, match="wrong signature"):  # a fresh timestamp on an old signature
        notify.verify_webhook(request["body"], moved, "s3cret-for-the-receiver")


@pytest.mark.parametrize("url", ["http://example.org/care", "http://10.0.0.7:8080/care", "ftp://127.0.0.1/care"])
def test_a_webhook_in_clear_off_loopback_is_refused_before_sending(tmp_path, url):
    settings = Settings(home=tmp_path, webhook_secret="s3cret")
    with pytest.raises(notify.DeliveryError, match="https is required"):
        notify.deliver(notify.Target("webhook", url), {"patient_id": "p1"}, subject="s", delivery_id="d", settings=settings)


def test_an_unsigned_webhook_is_refused_with_an_external_database(tmp_path, webhook):
    settings = Settings(home=tmp_path, database_url="postgresql://kidjamo@db.internal/kidjamo")
    with pytest.raises(notify.DeliveryError, match="KIDJAMO_WEBHOOK_SECRET is required"):
        notify.deliver(notify.Target("webhook", webhook.url + "/care"), {"alert_id": 1}, subject="s", delivery_id="d", settings=settings)
    assert webhook.requests == []


# --- no identifiers in SNS subjects or the log ------------------------------------------------------------------
@pytest.fixture
def alerts_db(fresh_database_url):
    with psycopg.connect(fresh_database_url) as connection:
        connection.execute("INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype, care_team)"
                           " VALUES ('patient-Zq81', '2018-01-01', 'F', 'HbSC', 'team-a')")
        connection.execute("INSERT INTO kidjamo.devices (device_id, patient_id) VALUES ('device-Xw42', 'patient-Zq81')")
    refresh_views(fresh_database_url, pseudonym_key=STRONG_KEY)  # gives the patient a pseudonym
    return fresh_database_url


def raise_fever(url: str, settings: Settings) -> None:
    rows = [reading(patient_id="patient-Zq81", device_id="device-Xw42", age=8.0, temperature=39.0, at=T0)]
    raise_alerts(url, frame(rows), interval_start=T0, interval_end=END, run_id="run", rules=default_rules(), settings=settings)


def test_the_log_channel_writes_no_patient_or_device_identifier(alerts_db, tmp_path, caplog):
    settings = Settings(home=tmp_path, notify_channels="log")
    raise_fever(alerts_db, settings)
    with caplog.at_level(logging.WARNING, logger="kidjamo.notify"):
        assert deliver_notifications(alerts_db, now=END, settings=settings)["sent"] == 1
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "kidjamo.notify")
    assert "kidjamo notification" in logged and '"alert_id"' in logged
    assert "patient-Zq81" not in logged and "device-Xw42" not in logged
    with psycopg.connect(alerts_db) as connection:
        pseudonym = connection.execute("SELECT pseudonym FROM kidjamo.pseudonyms WHERE identifier = 'patient-Zq81'").fetchone()[0]
    assert pseudonym in logged


def test_the_sns_subject_names_the_alert_not_the_patient(alerts_db, tmp_path, monkeypatch):
    with sns_topic_with_queue(monkeypatch) as topic:
        settings = Settings(home=tmp_path, notify_channels="sns", sns_topic_arn=topic.topic_arn, sns_endpoint_url=topic.url)
        raise_fever(alerts_db, settings)
        assert deliver_notifications(alerts_db, now=END, settings=settings)["sent"] == 1
        (message,) = topic.messages()
    envelope = json.loads(message["Body"])
    assert envelope["Subject"].startswith("[CRITICAL]") and "alert " in envelope["Subject"]
    assert "patient-Zq81" not in envelope["Subject"] and "device-Xw42" not in envelope["Subject"]
