"""The daily partitions of ``kidjamo.measurements``: created ahead of the data, dropped past the retention."""

from __future__ import annotations

from datetime import date, timedelta

from kidjamo.warehouse.audit import record_audit_event
from kidjamo.warehouse.database import PIPELINE_ROLE, connect


def partition_window(as_of: date, days_ahead: int) -> tuple[date, date]:
    """First and last day of the measurement partitions that must exist: ``as_of`` to ``days_ahead`` later."""
    if days_ahead < 0:
        raise ValueError(f"days_ahead must be >= 0, got {days_ahead}")
    return as_of, as_of + timedelta(days=days_ahead)


def ensure_partitions(database_url: str, first_day: date, last_day: date) -> int:
    """Create the daily partitions of ``kidjamo.measurements`` from first_day to last_day; return how many were new."""
    with connect(database_url, application_name="kidjamo-maintenance") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        return connection.execute("SELECT kidjamo.ensure_measurement_partitions(%s, %s)", (first_day, last_day)).fetchone()[0]


def apply_retention(database_url: str, keep_days: int, as_of: date) -> list[str]:
    """Drop the measurement partitions (and rollup rows) older than ``keep_days`` days before ``as_of``.

    A partition goes once all of it is older than the horizon: with keep_days=30 and as_of=2026-11-27,
    days up to 2026-10-27 inclusive are dropped. Whole partitions are dropped, never DELETEd row by
    row. Returns the dropped partitions; the retention is recorded in the audit log.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    cutoff = as_of - timedelta(days=keep_days)
    with connect(database_url, application_name="kidjamo-maintenance") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        dropped = connection.execute("SELECT kidjamo.drop_measurement_partitions_before(%s)", (cutoff,)).fetchone()[0]
        for table in ("vitals_hourly_rollup", "vitals_hourly_pending"):
            connection.execute(
                f"DELETE FROM kidjamo.{table} WHERE hour < %s::date::timestamp AT TIME ZONE 'UTC'", (cutoff,)
            )
        record_audit_event(
            connection, "retention", {"keep_days": keep_days, "as_of": as_of.isoformat(), "cutoff": cutoff.isoformat(), "dropped": dropped}
        )
    return list(dropped)
