"""Device credentials: secrets stored hashed, API keys and HMAC-signed requests with replay protection.

A device holds a random secret (``kdj_…``) given once by ``kidjamo devices register|rotate``. The
database keeps only ``sha256(secret)`` (``kidjamo.device_credentials``). A device authenticates each
request in one of two ways:

- API key: ``X-Device-Id`` and ``X-Api-Key: <secret>``; the service hashes the key and compares.
- Signature (what the simulator uses): ``X-Device-Id``, ``X-Timestamp: <unix seconds>`` (may carry
  milliseconds, ``1764239400.125``) and
  ``X-Signature: hex(HMAC-SHA256(key=sha256(secret), "<timestamp>." + body))``. The secret never
  travels; a timestamp further than the tolerance (default 300 s) from the server clock is refused,
  and a signature already seen within that tolerance is refused as a replay.

Mutual TLS, when wanted, is terminated by the reverse proxy in front (see docs/ingestion.md).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kidjamo.warehouse.database import connect

SECRET_PREFIX = "kdj_"


class AuthError(Exception):
    """Authentication (401) or authorisation (403) failed; ``detail`` says why."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


# --- secrets and signatures (shared by the service, the CLI and the simulator) ---------------------
def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """The stored form of a secret (and the HMAC key of signed requests)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def signature(key_hex: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of ``"<timestamp>." + body`` keyed with ``sha256(secret)`` (hex)."""
    return hmac.new(key_hex.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(device_id: str, secret: str, body: bytes, *, now: float | None = None, precise: bool = False) -> dict[str, str]:
    """The headers a device sends with a signed request (``precise``: a millisecond timestamp)."""
    moment = time.time() if now is None else now
    timestamp = f"{moment:.3f}" if precise else str(int(moment))
    return {
        "X-Device-Id": device_id,
        "X-Timestamp": timestamp,
        "X-Signature": signature(secret_hash(secret), timestamp, body),
    }


def api_key_headers(device_id: str, secret: str) -> dict[str, str]:
    return {"X-Device-Id": device_id, "X-Api-Key": secret}


# --- credential management (kidjamo devices) -------------------------------------------------------
def register_device(database_url: str, device_id: str, *, patient_id: str | None = None, secret: str | None = None) -> str:
    """Give ``device_id`` a new secret (creating the device for ``patient_id`` if needed); return the secret.

    Registering an already registered device replaces its secret and lifts a revocation.
    """
    secret = secret or generate_secret()
    with connect(database_url) as connection:
        row = connection.execute("SELECT patient_id FROM kidjamo.devices WHERE device_id = %s", (device_id,)).fetchone()
        if row is None:
            if patient_id is None:
                raise ValueError(f"device {device_id!r} is not in kidjamo.devices: import the registry or pass its patient")
            if connection.execute("SELECT 1 FROM kidjamo.patients WHERE patient_id = %s", (patient_id,)).fetchone() is None:
                raise ValueError(f"patient {patient_id!r} is not in kidjamo.patients: import the registry first")
            connection.execute("INSERT INTO kidjamo.devices (device_id, patient_id) VALUES (%s, %s)", (device_id, patient_id))
        elif patient_id is not None and row[0] != patient_id:
            raise ValueError(f"device {device_id!r} belongs to {row[0]!r}, not {patient_id!r}: reassign it in the registry")
        connection.execute(
            """
            INSERT INTO kidjamo.device_credentials (device_id, secret_hash) VALUES (%s, %s)
            ON CONFLICT (device_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, previous_secret_hash = NULL,
                previous_valid_until = NULL, rotated_at = now(), revoked_at = NULL
            """,
            (device_id, secret_hash(secret)),
        )
    return secret


def register_devices(database_url: str, device_ids: list[str]) -> dict[str, str]:
    """Register many devices (already in ``kidjamo.devices``) in one transaction; return their secrets."""
    issued = {device_id: generate_secret() for device_id in device_ids}
    with connect(database_url) as connection:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE new_credentials (device_id text, secret_hash text) ON COMMIT DROP")
            with cursor.copy("COPY new_credentials (device_id, secret_hash) FROM STDIN") as copy:
                for device_id, secret in issued.items():
                    copy.write_row((device_id, secret_hash(secret)))
            cursor.execute(
                """
                INSERT INTO kidjamo.device_credentials (device_id, secret_hash)
                SELECT device_id, secret_hash FROM new_credentials
                ON CONFLICT (device_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, previous_secret_hash = NULL,
                    previous_valid_until = NULL, rotated_at = now(), revoked_at = NULL
                """
            )
    return issued


def rotate_device(database_url: str, device_id: str, *, grace: timedelta = timedelta(hours=24)) -> str:
    """Issue a new secret; the previous one keeps working for ``grace``. Return the new secret."""
    secret = generate_secret()
    with connect(database_url) as connection:
        updated = connection.execute(
            """
            UPDATE kidjamo.device_credentials
               SET previous_secret_hash = secret_hash, previous_valid_until = now() + %s,
                   secret_hash = %s, rotated_at = now()
             WHERE device_id = %s AND revoked_at IS NULL
            """,
            (grace, secret_hash(secret), device_id),
        ).rowcount
    if updated != 1:
        raise ValueError(f"device {device_id!r} has no active credential: register it first")
    return secret


def revoke_device(database_url: str, device_id: str) -> None:
    """Refuse the device's every secret from now on (within the service's credential cache time)."""
    with connect(database_url) as connection:
        updated = connection.execute(
            "UPDATE kidjamo.device_credentials SET revoked_at = now(), previous_secret_hash = NULL WHERE device_id = %s",
            (device_id,),
        ).rowcount
    if updated != 1:
        raise ValueError(f"device {device_id!r} has no credential")


# --- verification (the service) --------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceCredential:
    device_id: str
    patient_id: str
    active: bool
    secret_hash: str
    previous_secret_hash: str | None
    previous_valid_until: datetime | None
    revoked: bool

    def hashes(self, now: datetime) -> list[str]:
        valid = [self.secret_hash]
        if self.previous_secret_hash and self.previous_valid_until and self.previous_valid_until > now:
            valid.append(self.previous_secret_hash)
        return valid


_CREDENTIAL_QUERY = """
    SELECT d.device_id, d.patient_id, d.active, c.secret_hash, c.previous_secret_hash, c.previous_valid_until,
           c.revoked_at IS NOT NULL
      FROM kidjamo.device_credentials c JOIN kidjamo.devices d USING (device_id)
"""


class CredentialStore:
    """Device credentials held in memory, reloaded in bulk every ``refresh_s`` and fetched on a miss."""

    def __init__(self, database_url: str, refresh_s: float = 15.0):
        self.database_url = database_url
        self.refresh_s = refresh_s
        self._credentials: dict[str, DeviceCredential] = {}
        self._misses: dict[str, float] = {}  # unknown device -> when it may be looked up again
        self._rechecked: dict[str, float] = {}  # device -> when its credential was last re-read after a failure
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> int:
        """Reload every credential (one query); return how many there are."""
        with connect(self.database_url, application_name="kidjamo-ingest") as connection:
            rows = connection.execute(_CREDENTIAL_QUERY).fetchall()
        credentials = {row[0]: DeviceCredential(*row) for row in rows}
        with self._lock:
            self._credentials = credentials
            self._misses.clear()
            self._loaded_at = time.monotonic()
        return len(credentials)

    def is_stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.refresh_s

    def get(self, device_id: str) -> DeviceCredential | None:
        """The device's credential, or None; a miss is looked up once per refresh period (blocking)."""
        credential = self._credentials.get(device_id)
        if credential is not None:
            return credential
        now = time.monotonic()
        if self._misses.get(device_id, 0.0) > now:
            return None
        with connect(self.database_url, application_name="kidjamo-ingest") as connection:
            row = connection.execute(_CREDENTIAL_QUERY + " WHERE device_id = %s", (device_id,)).fetchone()
        with self._lock:
            if row is None:
                self._misses[device_id] = now + min(self.refresh_s, 5.0)
                return None
            credential = DeviceCredential(*row)
            self._credentials[device_id] = credential
            return credential

    def reload(self, device_id: str, now: float) -> DeviceCredential | None | bool:
        """Re-read one device's credential after a failed check (a rotation or registration just happened).

        At most once per second per device, so wrong credentials cannot hammer the database; returns
        False when it is too early to look again.
        """
        if self._rechecked.get(device_id, 0.0) > now - 1.0:
            return False
        self._rechecked[device_id] = now
        with connect(self.database_url, application_name="kidjamo-ingest") as connection:
            row = connection.execute(_CREDENTIAL_QUERY + " WHERE device_id = %s", (device_id,)).fetchone()
        with self._lock:
            if row is None:
                self._credentials.pop(device_id, None)
                return None
            credential = DeviceCredential(*row)
            self._credentials[device_id] = credential
            return credential

    def cached(self, device_id: str) -> DeviceCredential | None | bool:
        """The credential if known without a query; None if known missing; False if a lookup is needed."""
        credential = self._credentials.get(device_id)
        if credential is not None:
            return credential
        return None if self._misses.get(device_id, 0.0) > time.monotonic() else False


class ReplayGuard:
    """Signatures seen within the tolerance window: a second use of one is a replay."""

    def __init__(self, tolerance_s: int):
        self.tolerance_s = tolerance_s
        self._seen: dict[str, float] = {}
        self._next_prune = 0.0

    def check_and_remember(self, signature_hex: str, now: float) -> bool:
        """True the first time a signature is seen, False for a replay."""
        if now >= self._next_prune:
            horizon = now - 2 * self.tolerance_s
            self._seen = {sig: seen for sig, seen in self._seen.items() if seen > horizon}
            self._next_prune = now + 10.0
        if signature_hex in self._seen:
            return False
        self._seen[signature_hex] = now
        return True


def verify_request(
    credential: DeviceCredential | None,
    headers: dict[str, str],
    body: bytes,
    *,
    replay_guard: ReplayGuard,
    now: float,
) -> DeviceCredential:
    """Check the request's API key or signature against the device's credential; raise :class:`AuthError`."""
    device_id = headers.get("x-device-id")
    if credential is None or not credential.active or credential.revoked:
        raise AuthError(401, f"device {device_id!r} is unknown, inactive or revoked")
    valid_hashes = credential.hashes(datetime.fromtimestamp(now, timezone.utc))
    api_key = headers.get("x-api-key")
    if api_key is not None:
        presented = secret_hash(api_key)
        if not any(hmac.compare_digest(presented, valid) for valid in valid_hashes):
            raise AuthError(401, "wrong API key")
        return credential
    timestamp, presented_signature = headers.get("x-timestamp"), headers.get("x-signature")
    if not timestamp or not presented_signature:
        raise AuthError(401, "missing credentials: send X-Api-Key, or X-Timestamp and X-Signature")
    try:
        signed_at = float(timestamp)
        if not math.isfinite(signed_at):
            raise ValueError(timestamp)
    except ValueError:
        raise AuthError(401, f"X-Timestamp must be unix seconds, got {timestamp[:40]!r}") from None
    if abs(now - signed_at) > replay_guard.tolerance_s:
        raise AuthError(401, f"X-Timestamp is {int(now - signed_at)} s from the server clock (tolerance {replay_guard.tolerance_s} s)")
    if not any(hmac.compare_digest(signature(valid, timestamp, body), presented_signature.lower()) for valid in valid_hashes):
        raise AuthError(401, "wrong signature")
    if not replay_guard.check_and_remember(presented_signature.lower(), now):
        raise AuthError(401, "replayed signature: this exact request was already received")
    return credential
