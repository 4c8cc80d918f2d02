"""The fast path: a reading that crosses a single-reading rule is an alert row within seconds."""

from __future__ import annotations

import time

import httpx
import psutil
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


def test_a_fever_without_spo2_raises_the_fever_alert_on_the_fast_path(service, post, new_reading, fleet, secrets, ingest_database):
    index = next(i for i, days in enumerate(fleet.age_days) if days >= 400 and i > 3)  # >= 1 year: fever, not fever_infant
    reading = new_reading(index, temperature=38.5)  # NHLBI 2014: 38.5 degC or more
    del reading["vitals"]["spo2"]
    assert post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], reading).status_code == 202
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


def fast_path_worker(service) -> psutil.Process:
    """The service's fast-path worker process (spawned by multiprocessing; not its resource tracker)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for child in psutil.Process(service.process.pid).children():
            command = " ".join(child.cmdline())
            if "spawn_main" in command:
                return child
        time.sleep(0.1)
    raise AssertionError("the service has no fast-path worker process")


def test_a_killed_fast_path_worker_is_replaced_and_the_next_alert_still_comes_at_once(start_service, post, new_reading, fleet, secrets, ingest_database):
    service = start_service()
    worker = fast_path_worker(service)
    worker.kill()
    worker.wait(10)
    index = 5
    started = time.perf_counter()
    assert post(service, fleet.device_ids[index], secrets[fleet.device_ids[index]], new_reading(index, spo2=82.0)).status_code == 202
    alert = wait_for_alert(ingest_database, fleet.patient_ids[index], "hypoxia_emergency")
    assert alert is not None and alert[1:] == ("critical", "fast_path")
    assert time.perf_counter() - started <= FAST_PATH_TARGET_S
    assert fast_path_worker(service).pid != worker.pid


def test_the_fast_path_worker_ends_with_the_service_even_when_the_service_is_killed(start_service):
    service = start_service()
    worker = fast_path_worker(service)
    service.kill()
    worker.wait(20)  # psutil.TimeoutExpired if it outlived the service
    assert not worker.is_running()
