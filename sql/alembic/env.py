"""Alembic environment: applies the revisions of sql/versions to the URL given by kidjamo.warehouse.migrations."""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from kidjamo.warehouse.migrations import MIGRATION_LOCK_ID

config = context.config
engine = create_engine(config.attributes["sqlalchemy_url"], poolclass=NullPool)

with engine.connect() as connection:
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
    connection.commit()
    try:
        context.configure(connection=connection, transaction_per_migration=True, version_table_schema="public")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
        connection.commit()
engine.dispose()
