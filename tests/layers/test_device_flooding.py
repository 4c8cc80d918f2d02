"""One device flooding a minute with bad readings no longer stops everybody's minute."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from tests.layers.helpers import ARRIVAL, NEXT, land, registered_fleet
from transforms.pipeline import STEPS, Interval, check_accounting


@pytest.fixture
def fleet(fresh_database_url, tmp_path):
    return registered_fleet(fresh_database_url, tmp_path, 4, seed=8)


def test_a_flooding_device_is_quarantined_and_reported_while_the_others_load(lake, fleet, fresh_database_url):
    readings = fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL)
    broken_device = fleet.device_ids[3]
    good = [r for r in readings if r["device_id"] != broken_device]
    flood = []
    for second in range(40):  # a broken sensor: implausible SpO2, fast
        reading = json.loads(json.dumps(next(r for r in readings if r["device_id"] == broken_device)))
        reading["timestamp"] = (ARRIVAL - timedelta(seconds=60 - second)).isoformat().replace("+00:00", "Z")
        reading["message_id"] = f"flood-{second}"
        reading["vitals"]["spo2"] = 150
        flood.append(reading)
    own_good = [r for r in readings if r["device_id"] == broken_device]
    land(lake, "fleet.ndjson", [json.dumps(r) for r in good + own_good + flood])

    interval = Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=fresh_database_url, run_id="minute-run")
    counts = {step.__name__: step(interval) for step in STEPS}  # no GateFailed: the batch goes on

    assert counts["step_gate_bronze"]["flooding_devices"] == [broken_device]
    accounting = check_accounting(interval)
    assert accounting["silver"] == len(good)
    with psycopg.connect(fresh_database_url) as connection:
        loaded = connection.execute("SELECT DISTINCT device_id FROM kidjamo.measurements ORDER BY 1").fetchall()
        reasons = dict(connection.execute(
            "SELECT reason, count(*) FROM kidjamo.quarantine WHERE device_id = %s GROUP BY 1", (broken_device,)).fetchall())
        incident = connection.execute(
            "SELECT readings, bad_readings, reasons FROM kidjamo.device_incidents WHERE device_id = %s", (broken_device,)).fetchall()
    assert [device for (device,) in loaded] == sorted(set(fleet.device_ids) - {broken_device})
    # Each flood reading reached bronze with its SpO2 emptied (an out_of_range field row), then was set
    # aside with the device's good ones (device_flooding).
    assert reasons == {"out_of_range": len(flood), "device_flooding": len(flood) + len(own_good)}
    assert incident == [(len(flood) + len(own_good), len(flood), {"out_of_range": len(flood)})]


def test_a_few_bad_readings_of_a_device_do_not_make_it_flooding(lake, fleet, fresh_database_url):
    readings = fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL)
    lines = [json.dumps(r) for r in readings] + ['{"device_id": "%s", "broken": ' % fleet.device_ids[0]]
    land(lake, "fleet.ndjson", lines)
    interval = Interval.for_task(ARRIVAL, NEXT, lake=lake, database_url=fresh_database_url, run_id="minute-run")
    counts = {step.__name__: step(interval) for step in STEPS}
    assert counts["step_gate_bronze"]["flooding_devices"] == []
    assert check_accounting(interval)["silver"] == len(readings)
