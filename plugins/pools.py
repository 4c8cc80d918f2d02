"""The Airflow pools the DAGs use, written once: the DAGs name them (plugins/airflow_glue.py), and
``kidjamo run``, the UI test (kidjamo/cli/airflow_env.py) and the compose file's airflow-init create them.

No Airflow import here, so that the CLI can read the pools without paying Airflow's start-up.
"""

from __future__ import annotations

from typing import NamedTuple


class Pool(NamedTuple):
    """An Airflow pool: its name, its slots and what it bounds (``airflow pools set NAME SLOTS DESCRIPTION``)."""

    name: str
    slots: int
    description: str


#: Bounds the concurrent warehouse writers (loads, alerts, view refreshes) across minute, backfill
#: and re-process runs, so that a wide re-process does not starve the minute runs of connections.
WAREHOUSE = Pool("kidjamo_warehouse", 2,
                 "tasks writing the warehouse (loads, alerts, view refreshes) across minute, backfill and re-process runs")

POOLS = (WAREHOUSE,)
