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


COMPONENTS = ("ingest", "pipeline", "analyst", "care")


def component_url(component: str, settings: Settings | None = None) -> str:
    """The URL a component connects with: its own login role, never the owner's or a superuser's.

    Embedded: the component's login on the embedded server (created with a random password by
    :func:`ensure_component_logins`). External: ``KIDJAMO_<COMPONENT>_DATABASE_URL`` (e.g.
    ``KIDJAMO_INGEST_DATABASE_URL``), else ``KIDJAMO_DATABASE_URL`` (a deployment that gives each
    component its own URL there, as docker-compose.airflow.yml does).
    """
    from kidjamo.warehouse.roles import COMPONENT_LOGINS

    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
    settings = settings or get_settings()
    if not settings.uses_embedded_database:
        return getattr(settings, f"{component}_database_url") or settings.database_url
    server = embedded_server(settings)
    login = COMPONENT_LOGINS[component][0]
    if login not in server.passwords():
        raise RuntimeError(f"the embedded server has no login for {component}: run `kidjamo db migrate` first")
    return server.url(user=login)


def ensure_component_logins(settings: Settings | None = None) -> list[str]:
    """Embedded server: create each component's login role with a random password (kept owner-only
    in ``$KIDJAMO_HOME/pg/passwords.json``); a no-op for logins that exist. Run after the migrations."""
    import secrets

    from kidjamo.warehouse.roles import COMPONENT_LOGINS, provision_component_logins

    settings = settings or get_settings()
    if not settings.uses_embedded_database:
        return []
    server = embedded_server(settings)
    known = server.passwords()
    missing = {component: secrets.token_urlsafe(32) for component, (login, _) in COMPONENT_LOGINS.items() if login not in known}
    if not missing:
        return []
    with connect(server.url()) as connection:
        logins = provision_component_logins(connection, missing)
    server.store_passwords({COMPONENT_LOGINS[component][0]: password for component, password in missing.items()})
    return logins


def provision_logins_from_environment(url: str, settings: Settings | None = None) -> list[str]:
    """Create the login of each component whose password is set (``KIDJAMO_<COMPONENT>_DB_PASSWORD``)."""
    from kidjamo.warehouse.roles import provision_component_logins

    settings = settings or get_settings()
    passwords = {component: getattr(settings, f"{component}_db_password") for component in COMPONENTS
                 if getattr(settings, f"{component}_db_password")}
    if not passwords:
        return []
    with connect(url) as connection:
        return provision_component_logins(connection, passwords)


def is_embedded(url: str, settings: Settings | None = None) -> bool:
    """Whether ``url`` points at the embedded server of ``$KIDJAMO_HOME`` (any of its databases)."""
    from psycopg.conninfo import conninfo_to_dict

    settings = settings or get_settings()
    server = embedded_server(settings)
    if not server.initialized:
        return False
    target = conninfo_to_dict(libpq_url(url))
    return target.get("host") in ("127.0.0.1", "localhost") and str(target.get("port")) == str(server.configured_port())


def pseudonym_key_for(url: str, settings: Settings | None = None) -> str:
    """The pseudonym key to use with the database at ``url``: refused when weak unless the database is embedded."""
    settings = settings or get_settings()
    return settings.checked_pseudonym_key(external=not is_embedded(url, settings))


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
