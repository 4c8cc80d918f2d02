"""Partitions are made ahead and on demand; retention drops whole partitions, never DELETEs rows."""

from datetime import date, datetime, timezone

import psycopg

from transforms.load import load_measurements
from transforms.partitions import apply_retention, ensure_partitions
from warehouse.support import silver_batch


def partitions(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute(
            "SELECT c.relname FROM pg_inherits JOIN pg_class AS c ON c.oid = inhrelid"
            " WHERE inhparent = 'kidjamo.measurements'::regclass ORDER BY 1")]


def load_days(url: str, days: list[int]) -> None:
    batch = silver_batch([("device-001", "patient-001", datetime(2026, 11, day, 12, tzinfo=timezone.utc)) for day in days])
    load_measurements(url, batch, "run-1")


def test_ensure_partitions_creates_the_missing_days_once(fresh_database_url):
    assert ensure_partitions(fresh_database_url, date(2026, 11, 27), date(2026, 11, 30)) == 4
    assert ensure_partitions(fresh_database_url, date(2026, 11, 27), date(2026, 12, 1)) == 1
    assert partitions(fresh_database_url) == [f"measurements_202611{d}" for d in (27, 28, 29, 30)] + ["measurements_20261201"]


def test_retention_drops_the_partitions_older_than_the_horizon(registered_url):
    load_days(registered_url, [20, 21, 25, 26])
    dropped = apply_retention(registered_url, keep_days=5, as_of=date(2026, 11, 27))
    assert dropped == ["kidjamo.measurements_20261120", "kidjamo.measurements_20261121"]
    assert partitions(registered_url) == ["measurements_20261125", "measurements_20261126"]
    with psycopg.connect(registered_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0] == 2
        assert connection.execute("SELECT min(hour) FROM kidjamo.vitals_hourly_rollup").fetchone()[0] == datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def test_retention_deletes_no_row_one_by_one(registered_url):
    load_days(registered_url, [20, 26])
    apply_retention(registered_url, keep_days=5, as_of=date(2026, 11, 27))
    with psycopg.connect(registered_url) as connection:
        connection.execute("SELECT pg_stat_force_next_flush()")
        deleted = connection.execute(
            "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables WHERE schemaname = 'kidjamo' AND relname LIKE 'measurements%'").fetchone()[0]
    assert deleted == 0


def test_retention_twice_drops_nothing_more_and_is_audited(registered_url):
    load_days(registered_url, [20, 26])
    apply_retention(registered_url, keep_days=5, as_of=date(2026, 11, 27))
    assert apply_retention(registered_url, keep_days=5, as_of=date(2026, 11, 27)) == []
    with psycopg.connect(registered_url) as connection:
        details = [row[0] for row in connection.execute("SELECT detail FROM kidjamo.audit_log WHERE action = 'retention' ORDER BY audit_id")]
    assert [d["dropped"] for d in details] == [["kidjamo.measurements_20261120"], []]
