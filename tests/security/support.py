"""Helpers of the security tests: logins as a given role, clinicians that clean up after themselves."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from kidjamo.warehouse.roles import add_clinician


def login_url(url: str, user: str, password: str | None = None) -> str:
    """The same database reached as login role ``user``."""
    return make_conninfo(url, user=user, **({"password": password} if password is not None else {}))


@contextmanager
def clinicians(url: str, logins: dict[str, list[str]]) -> Iterator[dict[str, list[str]]]:
    """Create clinician logins (cluster-wide roles) mapped to their teams; drop the roles afterwards."""
    with psycopg.connect(url) as connection:
        for login, teams in logins.items():
            add_clinician(connection, login, teams)
    try:
        yield logins
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            for login in logins:
                connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
