"""Every step of the minute pipeline can be killed between two of its writes and retried alone.

The lake is real; it is told to crash (as a killed worker would stop) just before the n-th write or
delete a step makes. The step is then retried on its own, the rest of the run goes on, and what the
run leaves must be what an uninterrupted run leaves: every raw record in silver or quarantine, the
accounting intact, and the warehouse holding each reading once.
"""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.storage import Lake
from tests.layers.helpers import ARRIVAL, NEXT, land
from transforms.pipeline import STEPS, Interval, check_accounting
from transforms.registry import import_registry


class SimulatedCrash(BaseException):
    """The worker died here (a BaseException, like the SIGKILL it stands for: no handler catches it)."""


class CrashingLake(Lake):
    """A real local lake that dies just before its ``crash_before``-th write or delete once armed."""

    crash_before: int | None = None

    def _count(self) -> None:
        if self.crash_before is None:
            return
        self.crash_before -= 1
        if self.crash_before == 0:
            self.crash_before = None
            raise SimulatedCrash()

    def write_bytes(self, path: str, data: bytes, *, durable: bool = True) -> None:
        self._count()
        super().write_bytes(path, data, durable=durable)

    def delete(self, path: str) -> None:
        self._count()
        super().delete(path)


@pytest.fixture
def minute(fresh_database_url, tmp_path):
    """One landed minute: a fleet's readings, a resend, a broken line, and a patient too old for the silver gate."""
    fleet = Fleet.generate(4, seed=5)
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), fresh_database_url, pseudonym_key="test-key")
    with psycopg.connect(fresh_database_url) as connection:
        connection.execute("UPDATE kidjamo.patients SET birth_date = '1900-06-01' WHERE patient_id = %s", (fleet.patient_ids[3],))
    lake = CrashingLake(f"file://{tmp_path / 'lake'}")
    readings = fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL, hypoxia_patient=True)
    lines = [json.dumps(r) for r in readings]
    land(lake, "batch-a.ndjson", lines[: len(lines) // 2] + ["{broken"])
    land(lake, "batch-b.ndjson", lines[len(lines) // 2:] + [lines[0]])
    return lake, fresh_database_url, len(lines) + 2


def _warehouse_counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as connection:
        measurements = connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0]
        quarantine = connection.execute("SELECT count(*) FROM kidjamo.quarantine").fetchone()[0]
    return measurements, quarantine


STEP_WRITES = [(step.__name__.removeprefix("step_"), n) for step in STEPS for n in (1, 2, 3)
               if step.__name__ not in ("step_load", "step_refresh_views")]  # their writes are database transactions


@pytest.mark.parametrize(("step_name", "crash_before"), STEP_WRITES, ids=[f"{s}-write{n}" for s, n in STEP_WRITES])
def test_a_step_killed_between_its_writes_and_retried_loses_nothing(minute, step_name, crash_before):
    lake, url, records = minute
    interval = Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=url, run_id="run-1")
    crashed = False
    for step in STEPS:
        if step.__name__.removeprefix("step_") == step_name:
            lake.crash_before = crash_before
            try:
                step(interval)
            except SimulatedCrash:
                crashed = True
            lake.crash_before = None
            step(Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=url, run_id="run-1"))  # the retry, alone
        else:
            step(interval)
    accounting = check_accounting(interval)
    assert accounting["raw_records"] == records
    assert accounting["silver"] + accounting["bronze_quarantined"] + accounting["rejected"] + accounting["duplicates"] == records
    assert accounting["rejected"] >= 1  # the silver gate did reject a row (else its retry proves little)
    assert _warehouse_counts(url) == (accounting["silver"], records - accounting["silver"])
    if crash_before == 1:
        assert crashed, f"{step_name} makes no lake write: the crash was never injected"


def test_the_silver_gate_rerun_alone_after_it_succeeded_keeps_its_rejections(minute):
    lake, url, records = minute
    interval = Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=url, run_id="run-1")
    for step in STEPS:
        step(interval)
    first = check_accounting(interval)
    gate_silver = next(step for step in STEPS if step.__name__ == "step_gate_silver")
    gate_silver(Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=url, run_id="run-1"))  # a cleared task, run again
    assert check_accounting(interval) == first and first["rejected"] >= 1
