"""Login roles of the warehouse: clinicians and their care teams.

A clinician is a PostgreSQL login role, member of ``kidjamo_clinician``, mapped to one or more care
teams in ``kidjamo.care_team_members``. Row-level security looks the teams up from the role in
effect (``current_user``), so a session cannot widen what it sees by changing a setting. The web
app logs in as ``kidjamo_authenticator`` (NOINHERIT, no rights of its own) and ``SET ROLE``s to
the clinician it serves; each clinician login is granted to it here.

These functions change cluster-wide roles: run them on a connection of the database owner (a
superuser, or a CREATEROLE role with ADMIN OPTION on ``kidjamo_clinician``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets

import psycopg
from psycopg import sql

CLINICIAN_GROUP = "kidjamo_clinician"
AUTHENTICATOR = "kidjamo_authenticator"
SCRAM_ITERATIONS = 4096
# A role name clinicians and operators can type; refuses pg_* and the kidjamo_* component roles.
_LOGIN_PATTERN = re.compile(r"^(?!pg_)(?!kidjamo_)[a-z][a-z0-9_.-]{0,62}$")


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (so the clear text never reaches the server or its logs).

    PostgreSQL prepares non-ASCII passwords with SASLprep, which the standard library cannot do:
    such passwords are refused rather than stored under a verifier that would never match.
    """
    if not password.isascii() or not password.isprintable():
        raise ValueError("a login password must be printable ASCII")
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731 - local spelling of the format
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def add_clinician(conn: psycopg.Connection, login: str, teams: list[str] | tuple[str, ...], password: str | None = None) -> None:
    """Create (or complete) clinician login role ``login`` and map it to ``teams``.

    The role is created LOGIN, member of ``kidjamo_clinician``, granted to ``kidjamo_authenticator``
    (for the web app's SET ROLE); an existing role keeps its other teams, gets the new ones, and a
    new password when one is given. Refuses reserved names and existing superusers or roles that
    can create roles, whose rights row-level security would not bound. Recorded in the audit log.
    The caller commits.
    """
    if not _LOGIN_PATTERN.match(login):
        raise ValueError(f"clinician login {login!r}: lower-case letters, digits, '_', '.', '-', starting with a letter,"
                         " not pg_* or kidjamo_*")
    teams = sorted({team.strip() for team in teams if team and team.strip()})
    if not teams:
        raise ValueError(f"clinician login {login!r}: at least one care team is needed")
    role = sql.Identifier(login)
    existing = conn.execute("SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = %s",
                            (login,)).fetchone()
    if existing is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(role, sql.Identifier(CLINICIAN_GROUP)))
    elif existing[0]:
        raise ValueError(f"role {login!r} exists and is a superuser, can create roles or bypasses RLS: not a clinician login")
    else:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(CLINICIAN_GROUP), role))
    if password is not None:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(scram_verifier(password))))
    conn.execute(sql.SQL("GRANT {} TO {}").format(role, sql.Identifier(AUTHENTICATOR)))
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO kidjamo.care_team_members (role_name, care_team) VALUES (%s, %s)"
                           " ON CONFLICT DO NOTHING", [(login, team) for team in teams])
    conn.execute("SELECT kidjamo.record_audit_event('clinician_added', %s::jsonb)",
                 (json.dumps({"login": login, "care_teams": teams, "password_set": password is not None}),))


def clinician_teams(conn: psycopg.Connection, login: str) -> list[str]:
    """The care teams ``login`` is mapped to, sorted."""
    return [row[0] for row in conn.execute(
        "SELECT care_team FROM kidjamo.care_team_members WHERE role_name = %s ORDER BY 1", (login,))]


# --- component logins -----------------------------------------------------------------------------
#: component -> (login role, the group role whose rights it gets). The authenticator (the care web
#: app's login) has no group: it reaches a clinician only by SET ROLE.
COMPONENT_LOGINS = {
    "ingest": ("kidjamo_svc_ingest", "kidjamo_ingest"),
    "pipeline": ("kidjamo_svc_pipeline", "kidjamo_pipeline"),
    "analyst": ("kidjamo_svc_analyst", "kidjamo_analyst"),
    "care": (AUTHENTICATOR, None),
}


def provision_component_logins(conn: psycopg.Connection, passwords: dict[str, str]) -> list[str]:
    """Create (or update) the login role of each component in ``passwords`` ({component: password}).

    Each login gets LOGIN, its password (as a SCRAM verifier), membership of its group role and
    nothing else (NOSUPERUSER, NOCREATEROLE, NOCREATEDB, NOBYPASSRLS). Run after the migrations
    (which create the group roles), on the owner's connection; the caller commits. Returns the logins.
    """
    unknown = sorted(set(passwords) - set(COMPONENT_LOGINS))
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; expected some of {sorted(COMPONENT_LOGINS)}")
    provisioned = []
    for component, password in sorted(passwords.items()):
        login, group = COMPONENT_LOGINS[component]
        role = sql.Identifier(login)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS PASSWORD {}").format(
            role, sql.Literal(scram_verifier(password))))
        if group is not None:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), role))
        provisioned.append(login)
    return provisioned
