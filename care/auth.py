"""Who is at the screen: web passwords, sessions, CSRF tokens, login rate limits, and the clinician's connection.

The app's database login is ``kidjamo_authenticator`` (no rights of its own). Before a clinician is
known it may only read password hashes, keep sessions and count login attempts; for a page or an
action it switches to the clinician's login role (``SET ROLE``), so row-level security decides
what that clinician sees and may change — the PostgREST pattern.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import sql

from kidjamo.warehouse.database import libpq_url
from kidjamo.settings import Settings
from kidjamo.warehouse.roles import add_clinician

PASSWORD_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
LOGIN_WINDOW = timedelta(minutes=15)
SEEN_EVERY = timedelta(minutes=1)  # how often a session's last_seen_at is brought up to date
MIN_PASSWORD_LENGTH = 10
# Verified when the login is unknown, so an unknown login costs as long as a wrong password.
_DUMMY_HASH = PASSWORD_HASHER.hash(secrets.token_urlsafe(16))


class LoginRefused(Exception):
    """A login that does not open a session; ``reason`` is ``bad_login`` or ``too_many_attempts``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Clinician:
    """The clinician behind a session."""

    login: str
    csrf_token: str
    session_hash: bytes


def provision_clinician(connection: psycopg.Connection, login: str, teams: list[str], password: str | None, *,
                        oidc_issuer: str | None = None, oidc_subject: str | None = None) -> None:
    """Create or update a clinician: the login role and its teams (``add_clinician``), its web password
    (``None``: keep the one it has, if any) and its identity at the hospital's provider (issuer, subject).

    Run on the database owner's connection; the caller commits.
    """
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password of {login!r} must have at least {MIN_PASSWORD_LENGTH} characters")
    if oidc_subject is not None and not (oidc_issuer and oidc_subject.strip()):
        raise ValueError(f"the hospital identity of {login!r} needs an issuer (KIDJAMO_CARE_OIDC_ISSUER) and a subject")
    add_clinician(connection, login, teams)
    if password is not None:
        connection.execute(
            "INSERT INTO kidjamo.clinician_credentials (role_name, password_hash) VALUES (%s, %s)"
            " ON CONFLICT (role_name) DO UPDATE SET password_hash = excluded.password_hash, updated_at = now()",
            (login, PASSWORD_HASHER.hash(password)))
    if oidc_subject is not None:
        owner = connection.execute("SELECT role_name FROM kidjamo.clinician_identities WHERE issuer = %s AND subject = %s",
                                   (oidc_issuer, oidc_subject)).fetchone()
        if owner is not None and owner[0] != login:
            raise ValueError(f"subject {oidc_subject!r} of {oidc_issuer} is already clinician {owner[0]!r}")
        connection.execute("INSERT INTO kidjamo.clinician_identities (issuer, subject, role_name) VALUES (%s, %s, %s)"
                           " ON CONFLICT DO NOTHING", (oidc_issuer, oidc_subject, login))
        connection.execute("SELECT kidjamo.record_audit_event('clinician_identity_added', %s::jsonb)",
                           (json.dumps({"login": login, "issuer": oidc_issuer, "subject": oidc_subject}),))


def _hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def audit(connection: psycopg.Connection, action: str, detail: dict, patient_id: str | None = None) -> None:
    """An audit row for a care-team access or denial (``care_*`` action), in the role now in effect."""
    connection.execute("SELECT kidjamo.record_care_access(%s, %s::jsonb, %s)",
                       (action, json.dumps(detail, default=str), patient_id))


class Gatekeeper:
    """Logins, sessions and per-request clinician connections of one care-team app."""

    def __init__(self, app_url: str, settings: Settings):
        self.url = libpq_url(app_url)
        self.settings = settings

    @contextmanager
    def authenticator(self) -> Iterator[psycopg.Connection]:
        """A transaction as the authenticator itself (sessions, logins, audit of anonymous denials)."""
        with psycopg.connect(self.url, application_name="kidjamo-care") as connection:
            yield connection

    @contextmanager
    def as_clinician(self, clinician: Clinician) -> Iterator[psycopg.Connection]:
        """A transaction in which every statement runs as the clinician's login role (RLS applies)."""
        with psycopg.connect(self.url, application_name="kidjamo-care") as connection:
            connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(clinician.login)))
            yield connection

    def log_in(self, login: str, password: str, *, client: str | None, now: datetime) -> tuple[str, Clinician]:
        """Check the password (rate-limited per login and per client); return the new session's cookie value.

        Every attempt is recorded; a refusal is audited. Raises :class:`LoginRefused`.
        """
        login = login.strip().lower()[:63]
        with self.authenticator() as connection:
            failures_login, failures_client = connection.execute(
                "SELECT count(*) FILTER (WHERE login = %s), count(*) FILTER (WHERE client IS NOT DISTINCT FROM %s)"
                " FROM kidjamo.care_login_attempts WHERE NOT succeeded AND attempted_at > %s",
                (login, client, now - LOGIN_WINDOW)).fetchone()
            if (failures_login >= self.settings.care_login_max_failures
                    or failures_client >= self.settings.care_login_max_client_failures):
                audit(connection, "care_login_refused", {"login": login, "client": client, "reason": "too_many_attempts"})
                connection.execute("INSERT INTO kidjamo.care_login_attempts (login, client, succeeded) VALUES (%s, %s, false)",
                                   (login, client))
                connection.commit()
                raise LoginRefused("too_many_attempts")
            row = connection.execute("SELECT password_hash FROM kidjamo.clinician_credentials WHERE role_name = %s",
                                     (login,)).fetchone()
            try:
                PASSWORD_HASHER.verify(row[0] if row else _DUMMY_HASH, password)
                ok = row is not None
            except (VerificationError, InvalidHashError):
                ok = False
            connection.execute("INSERT INTO kidjamo.care_login_attempts (login, client, succeeded) VALUES (%s, %s, %s)",
                               (login, client, ok))
            if not ok:
                audit(connection, "care_login_refused", {"login": login, "client": client, "reason": "bad_login"})
                connection.commit()
                raise LoginRefused("bad_login")
            return self.open_session(connection, login, client=client, now=now, method="password")

    def open_session(self, connection: psycopg.Connection, login: str, *, client: str | None, now: datetime,
                     method: str, detail: dict | None = None) -> tuple[str, Clinician]:
        """A new session of ``login`` (after a password or a hospital login), audited; returns its cookie value.

        Runs in the caller's authenticator transaction; ``detail`` is added to the audit row.
        """
        token, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session_hash = _hash_token(token)
        connection.execute(
            "INSERT INTO kidjamo.care_sessions (session_hash, role_name, csrf_token, client, created_at, last_seen_at,"
            " expires_at, method) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (session_hash, login, csrf_token, client, now, now,
             now + timedelta(minutes=self.settings.care_session_minutes), method))
        connection.execute("DELETE FROM kidjamo.care_sessions WHERE expires_at < %s", (now,))
        audit(connection, "care_login", {"login": login, "client": client, "method": method, **(detail or {})})
        return token, Clinician(login, csrf_token, session_hash)

    def session(self, token: str | None, *, now: datetime) -> Clinician | None:
        """The clinician of a live session cookie, or None (unknown, expired or logged out)."""
        if not token:
            return None
        session_hash = _hash_token(token)
        with self.authenticator() as connection:
            row = connection.execute(
                "SELECT role_name, csrf_token, last_seen_at FROM kidjamo.care_sessions"
                " WHERE session_hash = %s AND expires_at > %s", (session_hash, now)).fetchone()
            if row and now - row[2] > SEEN_EVERY:
                # A write (and its WAL flush) at most once a minute, not on every poll of the board.
                connection.execute("UPDATE kidjamo.care_sessions SET last_seen_at = %s WHERE session_hash = %s",
                                   (now, session_hash))
        return Clinician(row[0], row[1], session_hash) if row else None

    def log_out(self, clinician: Clinician) -> None:
        with self.authenticator() as connection:
            connection.execute("DELETE FROM kidjamo.care_sessions WHERE session_hash = %s", (clinician.session_hash,))
            audit(connection, "care_logout", {"login": clinician.login})


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a form's CSRF token with the session's."""
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
