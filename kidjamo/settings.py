"""The one place that decides where the pipeline runs: local lake or S3, embedded or external PostgreSQL.

Every value comes from the environment (``KIDJAMO_*``), all optional; see the README ("Configuration") and ``kidjamo settings``.
Pipeline code receives a :class:`Settings` (or the objects built from it) and never asks where it
runs.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Deployment settings, read from ``KIDJAMO_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="KIDJAMO_", extra="ignore")

    home: Path = Field(default=Path(".kidjamo"), description="local state: lake, PostgreSQL data, Airflow home, logs")
    lake_url: str | None = Field(default=None, description="lake root: file:///path or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (SeaweedFS, MinIO, LocalStack)")
    s3_region: str = Field(default="us-east-1")
    database_url: str | None = Field(default=None, description="external postgresql:// URL; unset = embedded")
    pg_bin_dir: Path | None = Field(default=None, description="PostgreSQL binaries for the embedded server")
    pg_port: int | None = Field(default=None, description="TCP port of the embedded server; unset = a free port")
    lateness: timedelta = Field(default=timedelta(days=7), description="older readings are quarantined too_late")
    future_tolerance: timedelta = Field(default=timedelta(minutes=5))
    late_after: timedelta = Field(default=timedelta(minutes=5), description="a reading delayed longer is marked late")
    max_bad_share: float = Field(default=0.5, ge=0, le=1, description="a batch with more bad readings fails its gate")
    pseudonym_key: str = Field(default="kidjamo-local-development-key", description="key of analytics patient hashes")

    # Ingestion service (ingestion/service.py, docs/ingestion.md).
    ingest_max_body_bytes: int = Field(default=65_536, description="larger request bodies get 413")
    ingest_max_batch: int = Field(default=10, description="most readings in one POST /v1/vitals")
    ingest_flush_interval_ms: float = Field(default=25.0, description="group commit: how long a flush collects requests")
    ingest_rate_per_device: float = Field(default=1.0, description="readings per second a device may sustain (429 above)")
    ingest_burst_per_device: int = Field(default=60, description="readings a device may send at once (token bucket size)")
    ingest_dedupe_window_s: int = Field(default=900, description="how long the service remembers message ids")
    ingest_signature_tolerance_s: int = Field(default=300, description="accepted clock difference of a signed request")
    ingest_credential_cache_s: float = Field(default=15.0, description="how long a device credential is cached")

    # Clinical alerting and notifications (transforms/alerts/, kidjamo/notify.py, docs/clinical-rules.md).
    alert_quiet_minutes: float = Field(default=30.0, description="an alert whose rule has not matched this long resolves itself")
    notify_channels: str = Field(default="log", description="comma-separated channels: webhook, sns, log")
    notify_min_severity: str = Field(default="high", description="webhook and SNS are used from this severity; the log gets every event")
    notify_max_attempts: int = Field(default=8, description="delivery attempts before a notification is marked failed")
    notify_attempts_per_run: int = Field(default=3, description="immediate retries (with backoff) within one delivery run")
    notify_retry_base_s: float = Field(default=30.0, description="backoff between delivery runs: base * 2^attempts, capped at 1 h")
    notify_claim_timeout_s: float = Field(default=300.0, description="a claim older than this (crashed sender) is retried")
    webhook_url: str | None = Field(default=None, description="care-team webhook (HTTP POST of the JSON document)")
    webhook_secret: str | None = Field(default=None, description="HMAC-SHA256 key of the X-Kidjamo-Signature header")
    webhook_timeout_s: float = Field(default=5.0)
    escalation_webhook_url: str | None = Field(default=None, description="webhook of the escalation channel")
    second_tier_webhook_url: str | None = Field(default=None, description="webhook of the second tier")
    sns_topic_arn: str | None = Field(default=None, description="care-team SNS topic")
    escalation_sns_topic_arn: str | None = Field(default=None)
    second_tier_sns_topic_arn: str | None = Field(default=None)
    sns_endpoint_url: str | None = Field(default=None, description="SNS-compatible endpoint (moto_server, LocalStack)")

    # Care-team web app (care/, docs/care-team.md).
    care_database_url: str | None = Field(default=None, description="the app's login (kidjamo_authenticator); unset = the database URL with that user")
    care_host: str = Field(default="127.0.0.1", description="address `kidjamo care serve` listens on")
    care_port: int = Field(default=8090, description="port of `kidjamo care serve`")
    care_cookie_secure: bool = Field(default=True, description="Secure cookies (turn off only for plain http beyond loopback)")
    care_session_minutes: float = Field(default=720.0, description="a care-team session expires this long after login")
    care_login_max_failures: int = Field(default=5, description="failed logins per login name in 15 minutes before refusing")
    care_login_max_client_failures: int = Field(default=20, description="failed logins per client address in 15 minutes")
    care_refresh_seconds: float = Field(default=5.0, description="how often the board and alert queue poll for changes")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @property
    def lake_root(self) -> str:
        """The lake URL, defaulting to ``file://$KIDJAMO_HOME/lake``."""
        return self.lake_url or f"file://{self.home / 'lake'}"

    @property
    def pg_data_dir(self) -> Path:
        return self.home / "pg"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url


@lru_cache(maxsize=1)
def _cached(environ_key: tuple) -> Settings:
    return Settings()


def get_settings() -> Settings:
    """Settings for the current environment (re-read whenever a ``KIDJAMO_*`` variable changes)."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("KIDJAMO_")))
    return _cached(key)
