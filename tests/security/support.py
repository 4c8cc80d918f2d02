"""Helpers of the security tests: logins as a given role, clinicians that clean up after themselves."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from kidjamo.warehouse.roles import add_clinician, scram_verifier


def test_password(login: str) -> str:
    """The password the security tests give ``login`` (the embedded server asks for one: SCRAM)."""
    return f"test-password-{login}"


def login_url(url: str, user: str, password: str | None = None) -> str:
    """The same database reached as login role ``user`` (with its test password unless told)."""
    return make_conninfo(url, user=user, password=password if password is not None else test_password(user))


def set_test_password(connection: psycopg.Connection, login: str) -> None:
    connection.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(login), sql.Literal(scram_verifier(test_password(login)))))


def drop_logins(url: str, names: Iterable[str]) -> None:
    """Drop test login roles (cluster-wide) after what they own or were granted in this database; absent ones are skipped."""
    with psycopg.connect(url, autocommit=True) as connection:
        for login in names:
            if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
                connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
                connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


@contextmanager
def logins(url: str, groups: dict[str, str]) -> Iterator[None]:
    """Create login roles {login: group role} with their test passwords (cluster-wide); drop them afterwards."""
    with psycopg.connect(url, autocommit=True) as connection:
        for login, group in groups.items():
            connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(group)))
            set_test_password(connection, login)
        set_test_password(connection, "kidjamo_authenticator")
    try:
        yield
    finally:
        drop_logins(url, groups)


@contextmanager
def clinicians(url: str, logins_and_teams: dict[str, list[str]]) -> Iterator[dict[str, list[str]]]:
    """Create clinician logins (cluster-wide roles) mapped to their teams; drop the roles afterwards."""
    with psycopg.connect(url) as connection:
        for login, teams in logins_and_teams.items():
            add_clinician(connection, login, teams, password=test_password(login))
        set_test_password(connection, "kidjamo_authenticator")
    try:
        yield logins_and_teams
    finally:
        drop_logins(url, logins_and_teams)
