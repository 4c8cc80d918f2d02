"""Notification channels: a signed webhook, AWS SNS (boto3) and the log.

Used for patient alerts (``transforms/alerts/``, which records every attempt) and for pipeline
failures (``plugins/notifiers.py``). Each sender raises :class:`DeliveryError` on failure so the
caller can retry with backoff.

Webhooks carry ``X-Kidjamo-Timestamp`` and ``X-Kidjamo-Signature: sha256=hex(HMAC-SHA256(secret,
"<timestamp>." + body))``: a receiver checks both with :func:`verify_webhook` and refuses a
timestamp outside its replay window. Patient data never leaves over plain http except to a loopback
address, and with an external (production) database a webhook is never sent unsigned. The log
channel and SNS subjects carry no patient identifier: the alert id and the patient's pseudonym. Targets depend on the audience: the care team, the escalation
channel (critical alert unacknowledged after 5 minutes) and the second tier (after 15 minutes);
an unset escalation target falls back to the tier below it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from kidjamo.settings import Settings, get_settings

log = logging.getLogger("kidjamo.notify")

CHANNELS = ("webhook", "sns", "log")
AUDIENCES = ("care_team", "escalation", "second_tier")
SIGNATURE_HEADER = "X-Kidjamo-Signature"
TIMESTAMP_HEADER = "X-Kidjamo-Timestamp"
DELIVERY_HEADER = "X-Kidjamo-Delivery"
REPLAY_WINDOW_S = 300


class DeliveryError(RuntimeError):
    """A channel did not accept the message (the text says which target and why)."""


@dataclass(frozen=True)
class Target:
    channel: str
    address: str | None  # URL, topic ARN, or None for the log


def sign(body: bytes, secret: str, timestamp: str) -> str:
    """Value of the signature header: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook(body: bytes, headers, secret: str, *, now: float | None = None, window_s: float = REPLAY_WINDOW_S) -> None:
    """Check a received webhook (for receivers and tests): raise :class:`ValueError` saying why it is refused.

    ``headers`` is any case-insensitive mapping (or a dict with the exact header names).
    """
    timestamp = headers.get(TIMESTAMP_HEADER) or headers.get(TIMESTAMP_HEADER.lower())
    presented = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower())
    if not timestamp or not presented:
        raise ValueError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise ValueError(f"{TIMESTAMP_HEADER} is not unix seconds: {timestamp[:40]!r}") from None
    if abs((time.time() if now is None else now) - sent_at) > window_s:
        raise ValueError(f"{TIMESTAMP_HEADER} is outside the replay window of {window_s:g} s")
    if not hmac.compare_digest(sign(body, secret, timestamp).encode(), presented.encode("utf-8", "surrogateescape")):
        raise ValueError("wrong signature")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook(url: str, secret: str | None, settings: Settings) -> None:
    """Refuse (DeliveryError) a webhook that would leak patient data: plain http off loopback, or unsigned in production."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname)):
        raise DeliveryError(f"webhook {url}: https is required (plain http only to a loopback address)")
    if not secret and not settings.uses_embedded_database:
        raise DeliveryError(f"webhook {url}: KIDJAMO_WEBHOOK_SECRET is required with an external database"
                            " (receivers must be able to check the sender)")


def encode(document: dict) -> bytes:
    """The JSON body sent on every channel (stable key order, so signatures are reproducible)."""
    return json.dumps(document, sort_keys=True, default=str, separators=(",", ":")).encode()


def configured_channels(settings: Settings | None = None) -> list[str]:
    """The channels named in ``KIDJAMO_NOTIFY_CHANNELS`` (comma-separated), in a stable order."""
    settings = settings or get_settings()
    names = [name.strip() for name in settings.notify_channels.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CHANNELS))
    if unknown:
        raise ValueError(f"KIDJAMO_NOTIFY_CHANNELS: unknown channel(s) {unknown}; expected some of {list(CHANNELS)}")
    return [channel for channel in CHANNELS if channel in names]


def target(channel: str, audience: str, settings: Settings | None = None) -> Target:
    """Where ``channel`` delivers for ``audience`` (escalation targets fall back to the tier below)."""
    settings = settings or get_settings()
    if channel == "log":
        return Target("log", None)
    if channel == "webhook":
        chain = {"care_team": [settings.webhook_url],
                 "escalation": [settings.escalation_webhook_url, settings.webhook_url],
                 "second_tier": [settings.second_tier_webhook_url, settings.escalation_webhook_url, settings.webhook_url]}
    elif channel == "sns":
        chain = {"care_team": [settings.sns_topic_arn],
                 "escalation": [settings.escalation_sns_topic_arn, settings.sns_topic_arn],
                 "second_tier": [settings.second_tier_sns_topic_arn, settings.escalation_sns_topic_arn, settings.sns_topic_arn]}
    else:
        raise ValueError(f"unknown channel {channel!r}; expected one of {CHANNELS}")
    return Target(channel, next((address for address in chain[audience] if address), None))


def send_webhook(url: str, document: dict, *, secret: str | None, delivery_id: str, timeout: float = 5.0,
                 now: float | None = None) -> str:
    """POST the document as JSON, signed with a timestamp when a secret is set; return the response status line."""
    body = encode(document)
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id}
    if secret:
        timestamp = str(int(time.time() if now is None else now))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(body, secret, timestamp)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        raise DeliveryError(f"webhook {url}: {type(error).__name__}: {error}") from error
    if response.status_code >= 300:
        raise DeliveryError(f"webhook {url}: HTTP {response.status_code} {response.text[:200]}")
    return f"HTTP {response.status_code}"


@functools.lru_cache(maxsize=8)
def _sns_client(region: str | None, endpoint_url: str | None):
    """One SNS client per region and endpoint (creating a boto3 client costs tens of milliseconds)."""
    import boto3

    return boto3.client("sns", region_name=region, endpoint_url=endpoint_url)


def publish_sns(topic_arn: str, document: dict, *, subject: str, delivery_id: str, group_id: str = "kidjamo",
                settings: Settings | None = None) -> str:
    """Publish the document to an SNS topic (FIFO topics get a group and deduplication id)."""
    from botocore.exceptions import BotoCoreError, ClientError

    settings = settings or get_settings()
    client = _sns_client(settings.s3_region, settings.sns_endpoint_url)
    arguments = {"TopicArn": topic_arn, "Message": encode(document).decode(), "Subject": subject[:100],
                 "MessageAttributes": {"delivery_id": {"DataType": "String", "StringValue": delivery_id}}}
    if topic_arn.endswith(".fifo"):
        arguments.update(MessageGroupId=group_id, MessageDeduplicationId=delivery_id[:128])
    try:
        response = client.publish(**arguments)
    except (BotoCoreError, ClientError) as error:
        raise DeliveryError(f"sns {topic_arn}: {error}") from error
    return f"MessageId {response['MessageId']}"


#: What the log channel writes of a notification: logs are shipped to places care data must not go,
#: so no patient identifier, evidence or vital value — the alert id leads to them in the warehouse.
LOGGED_FIELDS = ("kind", "event_id", "event_key", "event_type", "audience", "event_at", "alert_id", "care_team",
                 "rule_id", "rule_version", "severity", "status", "title", "reading_count", "is_late")


def write_log(document: dict, *, level: int = logging.WARNING) -> str:
    log.log(level, "kidjamo notification %s", encode({key: document[key] for key in LOGGED_FIELDS if key in document}).decode())
    return "logged"


def deliver(target_: Target, document: dict, *, subject: str, delivery_id: str, group_id: str = "kidjamo",
            settings: Settings | None = None) -> str:
    """Send one document to one target; return a short outcome text, raise DeliveryError on failure."""
    settings = settings or get_settings()
    if target_.channel == "log":
        return write_log(document)
    if not target_.address:
        raise DeliveryError(f"{target_.channel}: no target configured (see KIDJAMO_WEBHOOK_URL / KIDJAMO_SNS_TOPIC_ARN)")
    if target_.channel == "webhook":
        check_webhook(target_.address, settings.webhook_secret, settings)
        return send_webhook(target_.address, document, secret=settings.webhook_secret, delivery_id=delivery_id,
                            timeout=settings.webhook_timeout_s)
    return publish_sns(target_.address, document, subject=subject, delivery_id=delivery_id, group_id=group_id,
                       settings=settings)
