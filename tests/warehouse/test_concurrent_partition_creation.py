"""Loads of several shards at once may all need a new day's partition of kidjamo.measurements: one creates it."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg

DAY = date(2031, 5, 17)


def test_a_load_waiting_for_another_to_create_the_day_partition_uses_it_instead_of_creating_it_again(fresh_database_url):
    outcome: dict = {}
    with psycopg.connect(fresh_database_url) as first:
        # The first load creates the day's partition and keeps its transaction open (a long COPY).
        assert first.execute("SELECT kidjamo.ensure_measurement_partitions_for(ARRAY[%s::date])", (DAY,)).fetchone()[0] == 1

        def second_load() -> None:
            try:
                with psycopg.connect(fresh_database_url, application_name="second-load") as second:
                    outcome["created"] = second.execute(
                        "SELECT kidjamo.ensure_measurement_partitions_for(ARRAY[%s::date])", (DAY,)).fetchone()[0]
            except psycopg.Error as error:
                outcome["error"] = error

        waiter = threading.Thread(target=second_load)
        waiter.start()
        with psycopg.connect(fresh_database_url, autocommit=True) as observer:
            deadline = time.monotonic() + 30
            while not observer.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'second-load' "
                    "AND wait_event_type = 'Lock')").fetchone()[0]:
                assert time.monotonic() < deadline, "the second load never waited for the first"
                time.sleep(0.05)
        first.commit()
    waiter.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["created"] == 0
    with psycopg.connect(fresh_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'kidjamo.measurements'::regclass "
                                  "AND inhrelid::regclass::text LIKE %s", ("%20310517",)).fetchone()[0] == 1
