"""The one place that opens database connections and applies the schema.

``KIDJAMO_DATABASE_URL`` names any PostgreSQL server (RDS, Aurora, compose); when it is unset the
embedded server under ``$KIDJAMO_HOME/pg`` is used (and started on demand by ``kidjamo db start``
or :func:`ensure_database`). Inside Airflow, the ``kidjamo_postgres`` connection wins (see
``plugins/airflow_glue.py``), which passes its URL explicitly.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg

from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
from kidjamo.settings import Settings, get_settings

PIPELINE_ROLE = "kidjamo_pipeline"  # what loads and refreshes run as (SET ROLE), never the superuser
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def embedded_server(settings: Settings | None = None) -> EmbeddedPostgres:
    settings = settings or get_settings()
    return EmbeddedPostgres(settings.pg_data_dir, bin_dir=settings.pg_bin_dir, port=settings.pg_port)


def database_url(settings: Settings | None = None) -> str:
    """The URL of the configured database (external URL, or the embedded server's)."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    if not server.initialized:
        raise RuntimeError("the embedded PostgreSQL is not created yet: run `kidjamo db start`")
    return server.url()


def ensure_database(settings: Settings | None = None) -> str:
    """Start the embedded server when it is the one configured; return the database URL."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return embedded_server(settings).start()


def sqlalchemy_url(url: str) -> str:
    """The same URL spelled for SQLAlchemy with the psycopg (3) driver."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def libpq_url(url: str) -> str:
    """The same URL spelled for libpq (psql, psycopg): no SQLAlchemy driver suffix."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False, application_name: str = "kidjamo") -> Iterator[psycopg.Connection]:
    """A psycopg connection; committed on success, rolled back on error (unless autocommit)."""
    connection = psycopg.connect(libpq_url(url or database_url()), autocommit=autocommit, application_name=application_name)
    try:
        yield connection
        if not autocommit:
            connection.commit()
    except BaseException:
        if not autocommit:
            connection.rollback()
        raise
    finally:
        connection.close()
