"""Schema migrations: Alembic revisions under ``sql/versions``, each applying one SQL file of ``sql/``.

The SQL lives in plain files so that a DBA can read it; Alembic orders, records (table
``public.alembic_version``) and runs each revision in its own transaction. A session-level advisory
lock serialises concurrent ``kidjamo db migrate`` calls, so running it twice (or from two
processes) is safe.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from kidjamo.warehouse.database import SQL_DIR, sqlalchemy_url

MIGRATION_LOCK_ID = 724_411  # arbitrary, project-wide advisory lock id for migrations


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SQL_DIR / "alembic"))
    config.set_main_option("version_locations", str(SQL_DIR / "versions"))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(url)
    return config


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def migrate(url: str, revision: str = "head") -> list[str]:
    """Upgrade the database to ``revision``; return the revisions applied by this call."""
    from alembic.script import ScriptDirectory

    config = alembic_config(url)
    before = current_revision(url)
    command.upgrade(config, revision)
    after = current_revision(url)
    if before == after:
        return []
    script = ScriptDirectory.from_config(config)
    applied = [rev.revision for rev in script.iterate_revisions(after, before)]
    return list(reversed(applied))


def run_sql_file(name: str) -> None:
    """Execute one SQL file of ``sql/`` inside the current Alembic migration transaction."""
    sql = (Path(SQL_DIR) / name).read_text()
    dbapi_connection = op.get_bind().connection.dbapi_connection
    with dbapi_connection.cursor() as cursor:
        cursor.execute(sql)  # no parameters: psycopg sends it with the simple protocol, many statements allowed
