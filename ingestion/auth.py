"""Device credentials: keys derived from the secret, API keys and HMAC-signed requests with replay protection.

A device holds a random secret (``kdj_…``) given once by ``kidjamo devices register|rotate``. The
database never keeps it: from ``root = sha256(secret)`` two keys are derived by HKDF-Expand
(RFC 5869, SHA-256, one block) and stored in ``kidjamo.device_credentials``, readable only by the
role ``kidjamo_ingest``:

- the API-key verifier (info ``kidjamo device api-key verifier v1``): the service derives it from a
  presented ``X-Api-Key`` and compares. It cannot sign, and does not reveal the secret.
- the signing key (info ``kidjamo device request signing v1``): the HMAC key of signed requests,
  which the device derives from its secret the same way.

A device authenticates each request in one of two ways:

- API key: ``X-Device-Id`` and ``X-Api-Key: <secret>``.
- Signature (what the simulator uses): ``X-Device-Id``, ``X-Timestamp: <unix seconds>`` (may carry
  milliseconds, ``1764239400.125``) and
  ``X-Signature: hex(HMAC-SHA256(key=hex(signing key), "<timestamp>." + body))``. The secret never
  travels; a timestamp further than the tolerance (default 300 s) from the server clock is refused,
  and a signature already seen within that tolerance is refused as a replay.

Mutual TLS, when wanted, is terminated by the reverse proxy in front (see docs/ingestion.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from kidjamo.warehouse.database import connect, libpq_url

SECRET_PREFIX = "kdj_"
log = logging.getLogger(__name__)


class AuthError(Exception):
    """Authentication (401) or authorisation (403) failed; ``detail`` says why."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


# --- secrets and signatures (shared by the service, the CLI and the simulator) ---------------------
def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


API_KEY_INFO = b"kidjamo device api-key verifier v1"
SIGNING_INFO = b"kidjamo device request signing v1"


def _derive(secret: str, info: bytes) -> str:
    """HKDF-Expand (RFC 5869) of one SHA-256 block from ``root = sha256(secret)``, as hex.

    The root is already a uniform 32-byte key (the secret has 256 random bits), so HKDF-Extract is
    not needed; sql/0008 derives the same keys from the root stored by earlier versions.
    """
    root = hashlib.sha256(secret.encode()).digest()
    return hmac.new(root, info + b"\x01", hashlib.sha256).hexdigest()


def api_key_verifier(secret: str) -> str:
    """The stored form of a secret for API-key checks (cannot sign)."""
    return _derive(secret, API_KEY_INFO)


def signing_key(secret: str) -> str:
    """The HMAC key (hex) of the device's signed requests."""
    return _derive(secret, SIGNING_INFO)


def signature(key_hex: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of ``"<timestamp>." + body`` keyed with the hex signing key."""
    return hmac.new(key_hex.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(device_id: str, secret: str, body: bytes, *, now: float | None = None, precise: bool = False) -> dict[str, str]:
    """The headers a device sends with a signed request (``precise``: a millisecond timestamp)."""
    moment = time.time() if now is None else now
    timestamp = f"{moment:.3f}" if precise else str(int(moment))
    return {
        "X-Device-Id": device_id,
        "X-Timestamp": timestamp,
        "X-Signature": signature(signing_key(secret), timestamp, body),
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
            INSERT INTO kidjamo.device_credentials (device_id, api_key_verifier, signing_key) VALUES (%s, %s, %s)
            ON CONFLICT (device_id) DO UPDATE SET api_key_verifier = EXCLUDED.api_key_verifier,
                signing_key = EXCLUDED.signing_key, previous_api_key_verifier = NULL, previous_signing_key = NULL,
                previous_valid_until = NULL, rotated_at = now(), revoked_at = NULL
            """,
            (device_id, api_key_verifier(secret), signing_key(secret)),
        )
    return secret


def register_devices(database_url: str, device_ids: list[str]) -> dict[str, str]:
    """Register many devices (already in ``kidjamo.devices``) in one transaction; return their secrets."""
    issued = {device_id: generate_secret() for device_id in device_ids}
    with connect(database_url) as connection:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE new_credentials (device_id text, api_key_verifier text, signing_key text)"
                           " ON COMMIT DROP")
            with cursor.copy("COPY new_credentials (device_id, api_key_verifier, signing_key) FROM STDIN") as copy:
                for device_id, secret in issued.items():
                    copy.write_row((device_id, api_key_verifier(secret), signing_key(secret)))
            cursor.execute(
                """
                INSERT INTO kidjamo.device_credentials (device_id, api_key_verifier, signing_key)
                SELECT device_id, api_key_verifier, signing_key FROM new_credentials
                ON CONFLICT (device_id) DO UPDATE SET api_key_verifier = EXCLUDED.api_key_verifier,
                    signing_key = EXCLUDED.signing_key, previous_api_key_verifier = NULL, previous_signing_key = NULL,
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
               SET previous_api_key_verifier = api_key_verifier, previous_signing_key = signing_key,
                   previous_valid_until = now() + %s, api_key_verifier = %s, signing_key = %s, rotated_at = now()
             WHERE device_id = %s AND revoked_at IS NULL
            """,
            (grace, api_key_verifier(secret), signing_key(secret), device_id),
        ).rowcount
    if updated != 1:
        raise ValueError(f"device {device_id!r} has no active credential: register it first")
    return secret


def revoke_device(database_url: str, device_id: str) -> None:
    """Refuse the device's every secret from now on: every service instance is notified at commit."""
    with connect(database_url) as connection:
        updated = connection.execute(
            "UPDATE kidjamo.device_credentials SET revoked_at = now(), previous_api_key_verifier = NULL,"
            " previous_signing_key = NULL WHERE device_id = %s",
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
    api_key_verifier: str
    signing_key: str
    previous_api_key_verifier: str | None
    previous_signing_key: str | None
    previous_valid_until: datetime | None
    revoked: bool

    def valid_keys(self, now: datetime) -> list[tuple[str, str]]:
        """(API-key verifier, signing key) pairs accepted at ``now``: the current one, and the previous in its grace period."""
        valid = [(self.api_key_verifier, self.signing_key)]
        if self.previous_api_key_verifier and self.previous_valid_until and self.previous_valid_until > now:
            valid.append((self.previous_api_key_verifier, self.previous_signing_key))
        return valid


_CREDENTIAL_QUERY = """
    SELECT d.device_id, d.patient_id, d.active, c.api_key_verifier, c.signing_key, c.previous_api_key_verifier,
           c.previous_signing_key, c.previous_valid_until, c.revoked_at IS NOT NULL
      FROM kidjamo.device_credentials c JOIN kidjamo.devices d USING (device_id)
"""


CHANGES_CHANNEL = "kidjamo_device_credentials"  # NOTIFY channel of sql/0008's triggers (payload: device id)
ERASURE_CHANNEL = "kidjamo_erasure"  # NOTIFY by the erasure (payload: {"devices": [...]}), see transforms/rights.py


class CredentialStore:
    """Every device credential held in memory, loaded in bulk and kept current by LISTEN/NOTIFY.

    A device id absent from memory is refused without a query, so random ``X-Device-Id`` values
    cost the database nothing. Triggers on ``kidjamo.device_credentials`` and ``kidjamo.devices``
    notify every change (registration, rotation, revocation, deactivation, erasure) at commit; the
    listener thread of each service instance re-reads that device at once, and forgets it when the
    re-read fails (fail closed). When the listener's connection breaks it reconnects and reloads
    everything (changes may have been missed meanwhile); a full reload also runs every
    ``refresh_s`` as a safety net. Queries go through a small connection pool.
    """

    def __init__(self, database_url: str, refresh_s: float = 300.0, *, pool_size: int = 4, on_erasure=None):
        from psycopg_pool import ConnectionPool

        self.database_url = database_url
        self.refresh_s = refresh_s
        self.on_erasure = on_erasure  # called with the device ids of an erased patient (listener thread)
        self.pool = ConnectionPool(libpq_url(database_url), min_size=1, max_size=pool_size, name="kidjamo-ingest",
                                   kwargs={"application_name": "kidjamo-ingest", "autocommit": True})
        self._credentials: dict[str, DeviceCredential] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.listening = threading.Event()  # set while notifications are being received
        self.loaded = threading.Event()  # set by the first complete load: until then no id can be called unknown

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        self.pool.close()

    def refresh(self) -> int:
        """Reload every credential (one query); return how many there are."""
        with self.pool.connection() as connection:
            rows = connection.execute(_CREDENTIAL_QUERY).fetchall()
        credentials = {row[0]: DeviceCredential(*row) for row in rows}
        with self._lock:
            self._credentials = credentials
        self.loaded.set()
        return len(credentials)

    def reload_device(self, device_id: str) -> DeviceCredential | None:
        """Re-read one device's credential (after a notification); forget it if it is gone or cannot be read."""
        try:
            with self.pool.connection() as connection:
                row = connection.execute(_CREDENTIAL_QUERY + " WHERE device_id = %s", (device_id,)).fetchone()
        except Exception:
            with self._lock:
                self._credentials.pop(device_id, None)  # fail closed: a revocation must not be missed
            raise
        with self._lock:
            if row is None:
                self._credentials.pop(device_id, None)
                return None
            credential = DeviceCredential(*row)
            self._credentials[device_id] = credential
            return credential

    def get(self, device_id: str) -> DeviceCredential | None:
        """The device's credential from memory, or None: never a query."""
        return self._credentials.get(device_id)

    def start_listening(self) -> None:
        """Start the listener thread (it loads every credential once it listens)."""
        self._listener = threading.Thread(target=self._listen_forever, name="credential-listener", daemon=True)
        self._listener.start()

    def _erased(self, device_ids: list[str]) -> None:
        with self._lock:
            for device_id in device_ids:
                self._credentials.pop(device_id, None)
        if self.on_erasure is not None:
            self.on_erasure(device_ids)

    def _listen_forever(self) -> None:
        last_full = time.monotonic()
        while not self._stop.is_set():
            try:
                with psycopg.connect(libpq_url(self.database_url), autocommit=True,
                                     application_name="kidjamo-ingest-listen") as connection:
                    connection.execute(f"LISTEN {CHANGES_CHANNEL}")
                    connection.execute(f"LISTEN {ERASURE_CHANNEL}")
                    self.refresh()  # after LISTEN: nothing committed from now on can be missed
                    last_full = time.monotonic()
                    self.listening.set()
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=0.5):
                            if notice.channel == ERASURE_CHANNEL:
                                self._erased(json.loads(notice.payload)["devices"])
                            else:
                                self.reload_device(notice.payload)
                        if time.monotonic() - last_full > self.refresh_s:
                            self.refresh()
                            last_full = time.monotonic()
            except Exception:
                log.exception("device credential listener lost its connection; reconnecting")
            self.listening.clear()
            self._stop.wait(1.0)


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
    valid_keys = credential.valid_keys(datetime.fromtimestamp(now, timezone.utc))
    api_key = headers.get("x-api-key")
    if api_key is not None:
        presented = api_key_verifier(api_key)
        if not any(hmac.compare_digest(presented, verifier) for verifier, _ in valid_keys):
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
    presented_signature = presented_signature.lower()
    # compare_digest refuses non-ASCII str (TypeError): compare bytes, so a hostile header is a 401, not a 500.
    presented_bytes = presented_signature.encode("utf-8", "surrogateescape")
    if not any(hmac.compare_digest(signature(key, timestamp, body).encode(), presented_bytes) for _, key in valid_keys):
        raise AuthError(401, "wrong signature")
    if not replay_guard.check_and_remember(presented_signature, now):
        raise AuthError(401, "replayed signature: this exact request was already received")
    return credential
