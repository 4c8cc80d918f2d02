"""Airflow-side glue: where the DAGs find the database and the lake.

Inside Airflow the connection ``kidjamo_postgres`` (e.g. ``AIRFLOW_CONN_KIDJAMO_POSTGRES``) wins over
``KIDJAMO_DATABASE_URL`` when it is defined (DESIGN.md); otherwise the project settings decide.
"""

from __future__ import annotations

from kidjamo import database
from kidjamo.storage import Lake

CONNECTION_ID = "kidjamo_postgres"


def kidjamo_database_url() -> str:
    """The warehouse URL for a task: the Airflow connection if defined, else the project settings."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(CONNECTION_ID)
    except AirflowNotFoundException:
        return database.ensure_database()
    return database.libpq_url(connection.get_uri().replace("postgres://", "postgresql://", 1))


def kidjamo_lake() -> Lake:
    return Lake.from_settings()


def failure_notifiers() -> list:
    """Notifiers that report a failed task or run (not patient alerts) on the configured channels."""
    from plugins.notifiers import PipelineFailureNotifier

    return [PipelineFailureNotifier()]
