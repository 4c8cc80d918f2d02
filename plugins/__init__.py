"""Airflow glue: connection resolution, notifiers."""
