"""Notification channels: a signed webhook, AWS SNS (boto3) and the log.

Used for patient alerts (``transforms/alerts/``, which records every attempt) and for pipeline
failures (``plugins/notifiers.py``). Each sender raises :class:`DeliveryError` on failure so the
caller can retry with backoff. Targets depend on the audience: the care team, the escalation
channel (critical alert unacknowledged after 5 minutes) and the second tier (after 15 minutes);
an unset escalation target falls back to the tier below it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

import httpx

from kidjamo.settings import Settings, get_settings

log = logging.getLogger("kidjamo.notify")

CHANNELS = ("webhook", "sns", "log")
AUDIENCES = ("care_team", "escalation", "second_tier")
SIGNATURE_HEADER = "X-Kidjamo-Signature"
DELIVERY_HEADER = "X-Kidjamo-Delivery"


class DeliveryError(RuntimeError):
    """A channel did not accept the message (the text says which target and why)."""


@dataclass(frozen=True)
class Target:
    channel: str
    address: str | None  # URL, topic ARN, or None for the log


def sign(body: bytes, secret: str) -> str:
    """Value of the signature header: ``sha256=`` + hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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


def send_webhook(url: str, document: dict, *, secret: str | None, delivery_id: str, timeout: float = 5.0) -> str:
    """POST the document as JSON with its HMAC signature; return the response status line."""
    body = encode(document)
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
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


def write_log(document: dict, *, level: int = logging.WARNING) -> str:
    log.log(level, "kidjamo notification %s", encode(document).decode())
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
        return send_webhook(target_.address, document, secret=settings.webhook_secret, delivery_id=delivery_id,
                            timeout=settings.webhook_timeout_s)
    return publish_sns(target_.address, document, subject=subject, delivery_id=delivery_id, group_id=group_id,
                       settings=settings)
