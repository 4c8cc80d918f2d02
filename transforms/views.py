"""The analytics views: refreshed CONCURRENTLY (analysts keep reading meanwhile), and the hourly rollup
rows deferred loads left pending."""

from __future__ import annotations

import time

from kidjamo.warehouse.database import PIPELINE_ROLE, connect
from kidjamo.warehouse.pseudonyms import ensure_pseudonyms

#: Refreshed every minute: bounded by days x reasons. (analytics.device_health is a live view over
#: kidjamo.device_status, which every load keeps: nothing to refresh.)
LIGHT_VIEWS = ("data_quality_daily",)
#: Refreshed on the maintenance schedule: they grow with patients x hours or days of history.
HEAVY_VIEWS = ("vitals_hourly", "patient_daily")


def flush_hourly_rollup(database_url: str, *, pairs_per_transaction: int = 20_000) -> int:
    """Recompute the rollup rows of every pending (patient, hour) pair; return how many there were.

    Chunks of ``pairs_per_transaction`` pairs, each its own transaction, so that deferred loads
    wait at most one chunk.
    """
    total = 0
    while True:
        with connect(database_url, application_name="kidjamo-rollup") as connection:
            connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
            connection.execute("SET LOCAL work_mem = '64MB'")
            taken = connection.execute("SELECT kidjamo.recompute_pending_vitals_hourly(%s)",
                                        (pairs_per_transaction,)).fetchone()[0]
        total += taken
        if taken < pairs_per_transaction:
            return total


def refresh_views(database_url: str, *, pseudonym_key: str, heavy: bool = False) -> dict:
    """Refresh the analytics materialized views CONCURRENTLY (analysts keep reading meanwhile).

    Every minute (``heavy=False``): ``data_quality_daily``, whose size does not grow with history.
    On the maintenance schedule (``heavy=True``) also ``vitals_hourly`` and ``patient_daily``, after
    the hourly rollup rows deferred loads left pending are recomputed (:func:`flush_hourly_rollup`).
    New patients and devices first get their pseudonym (``analytics.device_health``, a live view,
    needs them too). Returns
    ``{"pseudonyms_added": n, "views": {name: seconds}}`` (plus ``rollup_hours_recomputed`` when heavy).
    """
    timings: dict[str, float] = {}
    flushed = flush_hourly_rollup(database_url) if heavy else 0
    with connect(database_url, application_name="kidjamo-refresh") as connection:
        connection.execute(f"SET ROLE {PIPELINE_ROLE}")
        added = ensure_pseudonyms(connection, pseudonym_key)
        connection.commit()
        for view in LIGHT_VIEWS + (HEAVY_VIEWS if heavy else ()):
            started = time.perf_counter()
            connection.execute("SELECT kidjamo.refresh_analytics_view(%s)", (view,))
            connection.commit()
            timings[view] = round(time.perf_counter() - started, 4)
    result = {"pseudonyms_added": added, "views": timings}
    if heavy:
        result["rollup_hours_recomputed"] = flushed
    return result
