"""Care systems allowed to read FHIR: one bearer token each, stored hashed, bound to care teams.

A token (``kfc_…``) is shown once by ``kidjamo fhir clients add|rotate``; the database keeps only its
sha256 (``kidjamo.fhir_clients``). A request sends ``Authorization: Bearer <token>``; the client then
reads only the patients of the care teams it was given, like a clinician under row-level security.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from kidjamo.warehouse.database import connect

TOKEN_PREFIX = "kfc_"


@dataclass(frozen=True)
class FhirClient:
    """An authenticated care system."""

    client_id: str
    care_teams: tuple[str, ...]


class ClientError(ValueError):
    """A client management request that cannot be done (unknown client, bad care team list)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def add_client(database_url: str, client_id: str, care_teams: list[str], *, description: str | None = None) -> str:
    """Register a care system reading ``care_teams``' patients; return its token (shown once)."""
    teams = sorted({team.strip() for team in care_teams if team.strip()})
    if not teams:
        raise ClientError("a FHIR client needs at least one care team (--care-team)")
    token = _new_token()
    with connect(database_url, application_name="kidjamo-fhir-clients") as connection:
        if connection.execute("SELECT 1 FROM kidjamo.fhir_clients WHERE client_id = %s", (client_id,)).fetchone():
            raise ClientError(f"FHIR client {client_id!r} already exists: rotate its token or revoke it")
        connection.execute(
            "INSERT INTO kidjamo.fhir_clients (client_id, description, token_hash, care_teams) VALUES (%s, %s, %s, %s)",
            (client_id, description, token_hash(token), teams))
    return token


def rotate_client(database_url: str, client_id: str) -> str:
    """Replace a client's token (the old one stops working at once); return the new token."""
    token = _new_token()
    with connect(database_url, application_name="kidjamo-fhir-clients") as connection:
        updated = connection.execute(
            "UPDATE kidjamo.fhir_clients SET token_hash = %s, rotated_at = now(), revoked_at = NULL WHERE client_id = %s",
            (token_hash(token), client_id)).rowcount
    if not updated:
        raise ClientError(f"no FHIR client {client_id!r}")
    return token


def revoke_client(database_url: str, client_id: str) -> None:
    """Revoke a client's token: every request with it gets 401 from now on."""
    with connect(database_url, application_name="kidjamo-fhir-clients") as connection:
        updated = connection.execute(
            "UPDATE kidjamo.fhir_clients SET revoked_at = now() WHERE client_id = %s AND revoked_at IS NULL", (client_id,)).rowcount
    if not updated:
        raise ClientError(f"no active FHIR client {client_id!r}")


def list_clients(database_url: str) -> list[dict]:
    """Every client, without token hashes."""
    with connect(database_url, application_name="kidjamo-fhir-clients") as connection:
        cursor = connection.execute(
            "SELECT client_id, description, care_teams, created_at, rotated_at, revoked_at, last_used_at"
            " FROM kidjamo.fhir_clients ORDER BY client_id")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def authenticate(database_url: str, token: str) -> FhirClient | None:
    """The active client holding ``token``, or None; records when it was last used."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = token_hash(token)
    with connect(database_url, application_name="kidjamo-fhir-auth") as connection:
        row = connection.execute(
            "UPDATE kidjamo.fhir_clients SET last_used_at = now() WHERE token_hash = %s AND revoked_at IS NULL"
            " RETURNING client_id, care_teams, token_hash", (digest,)).fetchone()
    if row is None or not hmac.compare_digest(row[2], digest):
        return None
    return FhirClient(row[0], tuple(row[1]))
