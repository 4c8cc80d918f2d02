"""A throw-away migrated database on the session's PostgreSQL server, for fixtures of any scope."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg

from kidjamo.warehouse import migrations
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres


@contextmanager
def migrated_database(server: EmbeddedPostgres, name: str) -> Iterator[str]:
    """Create database ``name`` (dropping a leftover), migrate it, yield its URL, drop it afterwards."""
    admin_url = server.url("postgres")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    migrations.migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
