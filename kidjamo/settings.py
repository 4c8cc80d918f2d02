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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_PSEUDONYM_KEY = "kidjamo-local-development-key"
MIN_PSEUDONYM_KEY_BYTES = 32


class Settings(BaseSettings):
    """Deployment settings, read from ``KIDJAMO_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="KIDJAMO_", extra="ignore")

    home: Path = Field(default=Path(".kidjamo"), description="local state: lake, PostgreSQL data, Airflow home, logs")
    lake_url: str | None = Field(default=None, description="lake root: file:///path or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (SeaweedFS, MinIO, LocalStack)")
    s3_region: str = Field(default="us-east-1")
    database_url: str | None = Field(default=None, description="external postgresql:// URL; unset = embedded")
    # Each component's own login (docs/security.md); unset = KIDJAMO_DATABASE_URL (embedded: generated logins).
    ingest_database_url: str | None = Field(default=None, description="the ingestion service's URL (login of kidjamo_ingest)")
    pipeline_database_url: str | None = Field(default=None, description="the pipeline's URL (login of kidjamo_pipeline)")
    analyst_database_url: str | None = Field(default=None, description="analysts' URL (login of kidjamo_analyst)")
    care_database_url: str | None = Field(default=None, description="the care web app's URL (kidjamo_authenticator)")
    # Passwords `kidjamo db migrate` gives the component logins it creates on an external server.
    ingest_db_password: str | None = Field(default=None, description="password of kidjamo_svc_ingest")
    pipeline_db_password: str | None = Field(default=None, description="password of kidjamo_svc_pipeline")
    analyst_db_password: str | None = Field(default=None, description="password of kidjamo_svc_analyst")
    care_db_password: str | None = Field(default=None, description="password of kidjamo_authenticator")
    pg_bin_dir: Path | None = Field(default=None, description="PostgreSQL binaries for the embedded server")
    pg_port: int | None = Field(default=None, description="TCP port of the embedded server; unset = a free port")
    lateness: timedelta = Field(default=timedelta(days=7), description="older readings are quarantined too_late")
    future_tolerance: timedelta = Field(default=timedelta(minutes=5))
    late_after: timedelta = Field(default=timedelta(minutes=5), description="a reading delayed longer is marked late")
    max_bad_share: float = Field(default=0.5, ge=0, le=1,
                                 description="a device with a larger share of bad readings in a batch is flooding: its readings are quarantined")
    flood_min_bad: int = Field(default=10, ge=1, description="bad readings in one batch before a device can be judged flooding")
    pseudonym_key: str = Field(default=DEFAULT_PSEUDONYM_KEY, description="key of analytics patient hashes (refused when weak with an external database)")
    backup_url: str | None = Field(default=None, description="warehouse backups: file:///path or s3://bucket/prefix; unset = $KIDJAMO_HOME/backups")
    backup_retention_days: int = Field(default=7, ge=1, description="every instant of the last N days stays recoverable")
    shards: int = Field(default=1, ge=1, le=64,
                        description="shards of a minute, processed in parallel by the DAG's mapped tasks (1 = one task per step)")
    log_level: str = Field(default="INFO", description="level of the project's JSON logs: DEBUG, INFO, WARNING, ERROR")

    # Ingestion service (ingestion/service.py, docs/ingestion.md).
    ingest_max_body_bytes: int = Field(default=65_536, description="larger request bodies get 413")
    ingest_max_batch: int = Field(default=10, description="most readings in one POST /v1/vitals")
    ingest_flush_interval_ms: float = Field(default=25.0, description="group commit: how long a flush collects requests")
    ingest_rate_per_device: float = Field(default=1.0, description="readings per second a device may sustain (429 above)")
    ingest_burst_per_device: int = Field(default=60, description="readings a device may send at once (token bucket size)")
    ingest_dedupe_window_s: int = Field(default=900, description="how long the service remembers message ids")
    ingest_signature_tolerance_s: int = Field(default=300, description="accepted clock difference of a signed request")
    ingest_credential_cache_s: float = Field(default=300.0, description="full reload of device credentials (changes arrive at once by NOTIFY)")
    ingest_auth_failure_rate: float = Field(default=50.0, description="401s per second, all clients together (429 above)")
    ingest_auth_failure_burst: int = Field(default=200, description="401s at once before the global limit applies")
    ingest_header_timeout_s: float = Field(default=10.0, description="a client must send its request headers within this")
    ingest_body_timeout_s: float = Field(default=10.0, description="a client must send its request body within this (408)")
    ingest_limit_concurrency: int = Field(default=2000, description="connections and requests at once (503 above)")
    ingest_db_pool_size: int = Field(default=4, description="PostgreSQL connections of the service's pool")

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

    # Lineage (plugins/lineage.py, docs/lineage.md): where Airflow's OpenLineage events go.
    openlineage_transport: str = Field(default="file", description="file ($KIDJAMO_HOME/lineage/openlineage.ndjson), console, http (Marquez) or off")
    openlineage_url: str | None = Field(default=None, description="OpenLineage HTTP endpoint, e.g. Marquez http://marquez:5000 (transport http)")
    openlineage_namespace: str = Field(default="kidjamo", description="OpenLineage namespace of the Kidjamo jobs")

    # Care-team web app (care/, docs/care-team.md).
    care_host: str = Field(default="127.0.0.1", description="address `kidjamo care serve` listens on")
    care_port: int = Field(default=8090, description="port of `kidjamo care serve`")
    care_cookie_secure: bool = Field(default=True, description="Secure cookies (turn off only for plain http beyond loopback)")
    care_session_minutes: float = Field(default=720.0, description="a care-team session expires this long after login")
    care_login_max_failures: int = Field(default=5, description="failed logins per login name in 15 minutes before refusing")
    care_login_max_client_failures: int = Field(default=20, description="failed logins per client address in 15 minutes")
    care_refresh_seconds: float = Field(default=5.0, description="how often the board and alert queue poll for changes")
    care_timezone: str = Field(default="UTC", description="IANA time zone the care pages and charts show times in, e.g. Africa/Douala")
    # Optional hospital login (OpenID Connect): on when issuer and client id are set (docs/care-team.md).
    care_oidc_issuer: str | None = Field(default=None, description="OpenID Connect issuer URL of the hospital's identity provider")
    care_oidc_client_id: str | None = Field(default=None, description="the care app's client id at the identity provider")
    care_oidc_client_secret: str | None = Field(default=None, repr=False, description="the care app's client secret at the identity provider")
    care_oidc_redirect_url: str | None = Field(default=None, description="callback URL registered at the provider; unset = this app's /login/oidc/callback")
    care_oidc_provider_name: str = Field(default="", description="name on the login page's button (e.g. the hospital's)")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @field_validator("care_timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"KIDJAMO_CARE_TIMEZONE {name!r} is not an IANA time zone (e.g. Africa/Douala, UTC)") from None
        return name

    @property
    def care_oidc_enabled(self) -> bool:
        """Whether the care app offers the hospital's OpenID Connect login (issuer and client id set)."""
        return bool(self.care_oidc_issuer and self.care_oidc_client_id)

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
    def lineage_file(self) -> Path:
        return self.home / "lineage" / "openlineage.ndjson"

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url

    def checked_pseudonym_key(self, *, external: bool | None = None) -> str:
        """The pseudonym key, refused outside the embedded (development) database when it is weak.

        ``external`` says whether the database in use is not the embedded one (default: whether
        ``KIDJAMO_DATABASE_URL`` is set; inside Airflow the connection's URL decides, see
        :func:`kidjamo.warehouse.database.pseudonym_key_for`).

        The default key is public: with it anyone re-identifies every analytics pseudonym by hashing
        the known patient ids. Against an external database the key must be set, not a ``change-me``
        placeholder, and at least 32 bytes long.
        """
        key = self.pseudonym_key
        if not (external if external is not None else not self.uses_embedded_database):
            return key
        if key == DEFAULT_PSEUDONYM_KEY:
            problem = "is the public default"
        elif "change-me" in key.lower() or "changeme" in key.lower():
            problem = "is a change-me placeholder"
        elif len(key.encode()) < MIN_PSEUDONYM_KEY_BYTES:
            problem = f"is {len(key.encode())} bytes long, below {MIN_PSEUDONYM_KEY_BYTES}"
        else:
            return key
        raise ValueError(f"KIDJAMO_PSEUDONYM_KEY {problem}: with an external database (KIDJAMO_DATABASE_URL) set a random key"
                         f" of at least {MIN_PSEUDONYM_KEY_BYTES} bytes, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`")


@lru_cache(maxsize=1)
def _cached(environ_key: tuple) -> Settings:
    return Settings()


def get_settings() -> Settings:
    """Settings for the current environment (re-read whenever a ``KIDJAMO_*`` variable changes)."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("KIDJAMO_")))
    return _cached(key)
