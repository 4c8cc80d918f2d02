"""The fast path: a reading that crosses a single-reading rule is an alert row within seconds."""

from __future__ import annotations

import time

import httpx
import psycopg


FAST_PATH_TARGET_S = 5.0


def wait_for_alert(database_url: str, patient_id: str, rule_id: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT alert_id, severity, source FROM kidjamo.alerts WHERE patient_id = %s AND rule_id = %s",
                (patient_id, rule_id),
            ).fetchone()
            if row is not None:
                return row
            time.sleep(0.02)
    return None


def rules_fired(database_url: str, patient_id: str) -> list[str]:
    with psycopg.connect(database_url) as connection:
        return [r[0] for r in connection.execute("SELECT rule_id FROM kidjamo.alerts WHERE patient_id = %s", (patient_id,))]


def test_low_spo2_becomes_a_critical_alert_row_within_five_seconds(service, post, new_reading, fleet, secrets, ingest_database):
    index = 0
    started = time.perf_counter()
    response = post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], new_reading(index, spo2=82.0))
    assert response.status_code == 202
    alert = wait_for_alert(ingest_database, fleet.patient_ids[index], "hypoxia_emergency")
    latency = time.perf_counter() - started
    print(f"fast path, POST to alert row: {latency * 1000:.0f} ms")
    assert alert is not None and alert[1:] == ("critical", "fast_path")
    assert latency <= FAST_PATH_TARGET_S


def test_a_fever_at_38_5_takes_the_fast_path_too(service, post, new_reading, fleet, secrets, ingest_database):
    index = 1
    post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], new_reading(index, temperature=38.5))
    fever = wait_for_alert(ingest_database, fleet.patient_ids[index], "fever")
    assert fever is not None and fever[1:] == ("critical", "fast_path")


def test_normal_readings_and_implausible_values_do_not_take_the_fast_path(service, post, new_reading, fleet, secrets, ingest_database):
    index = 2
    device_id, secret = fleet.device_ids[index], secrets[fleet.device_ids[index]]
    assert post(service, device_id, secret, [new_reading(index), new_reading(index, spo2=40.0)]).json()["accepted"] == 2
    time.sleep(1.5)
    assert rules_fired(ingest_database, fleet.patient_ids[index]) == []


def test_fast_path_latency_is_in_the_metrics(service, post, new_reading, fleet, secrets, ingest_database):
    index = 3
    post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], new_reading(index, spo2=80.0))
    assert wait_for_alert(ingest_database, fleet.patient_ids[index], "hypoxia_emergency") is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = httpx.get(f"{service.url}/metrics").text
        raised = next(line for line in text.splitlines() if line.startswith('kidjamo_ingest_fast_path_total{result="raised"}'))
        if float(raised.split()[-1]) >= 1:
            break
        time.sleep(0.05)
    assert "kidjamo_ingest_fast_path_duration_seconds_count" in text
    assert float(raised.split()[-1]) >= 1
