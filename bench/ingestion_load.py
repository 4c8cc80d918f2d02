"""Ingestion service under sustained load on loopback (target, README "Performance": >= 3,500 readings/s, p99 < 100 ms).

Starts, in a temporary KIDJAMO_HOME, an embedded PostgreSQL (or uses KIDJAMO_DATABASE_URL), a
provisioned fleet and ``kidjamo ingest serve`` in its own process, then drives it open-loop: requests
of ``--batch`` signed readings are scheduled at a fixed rate over ``--connections`` keep-alive
connections, and each latency is measured from the request's *scheduled* time (so a stalled server
cannot hide its queueing). Reported: sustained accepted readings/s, p50/p95/p99/max latency, non-202
answers, group commits per minute, landing files, readings found in landing (0 lost), and the fast path under
the load (POST of a reading crossing a single-reading rule, SpO2 81 % or temperature 38.5 degC, to the alert
row the published sources give for the patient's age: ``fever_infant`` under 1 year, else ``fever``; target
p95 <= 2 s, and every sample must find its row: a missing one is printed and fails the run). Group commits are the durable parts a 202 waits for; the
service publishes one landing file per minute from them. Bounded by ``--duration``.

Usage: ``python -m bench.ingestion_load [--rate 4000] [--duration 20] [--batch 10] [--devices 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

KIDJAMO = str(Path(sys.executable).parent / "kidjamo")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _prepare_requests(fleet, secrets: dict[str, str], readings_per_device: int, batch: int) -> list[tuple[str, str, bytes]]:
    """(device_id, secret, body) for every request, devices interleaved so each one posts rarely."""
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(seconds=30 * readings_per_device)
    readings = fleet.readings(start, start + timedelta(seconds=30 * readings_per_device))
    by_device: dict[str, list[dict]] = {}
    for reading in readings:
        by_device.setdefault(reading["device_id"], []).append(reading)
    rounds = []
    for first in range(0, readings_per_device, batch):
        rounds.append([(device_id, secrets[device_id], json.dumps(items[first:first + batch], separators=(",", ":")).encode())
                       for device_id, items in by_device.items() if items[first:first + batch]])
    return [request for requests in rounds for request in requests]


async def _connection(host: str, port: int, queue: asyncio.Queue, latencies: list[float], statuses: dict[int, int], accepted: list[int]):
    from ingestion.auth import signed_headers

    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            scheduled, (device_id, secret, body) = item
            headers = signed_headers(device_id, secret, body, precise=True)
            head = (
                f"POST /v1/vitals HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            ).encode()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - scheduled)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
            if status == 202:
                accepted.append(json.loads(payload)["accepted"])
    finally:
        writer.close()


async def _drive(url: str, requests: list, rate_readings: float, batch: int, connections: int, duration: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted: list[int] = []
    workers = [asyncio.create_task(_connection(host, int(port), queue, latencies, statuses, accepted)) for _ in range(connections)]
    interval = batch / rate_readings
    started = time.perf_counter()
    count = min(len(requests), int(duration / interval))
    for index in range(count):
        scheduled = started + index * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, requests[index]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    wall = time.perf_counter() - started
    return {"requests": count, "wall_s": wall, "latencies": latencies, "statuses": statuses, "accepted": sum(accepted)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process's live children: the service's fast-path worker (and its resource tracker)."""
    import psutil

    return sum(_cpu_seconds(child.pid) for child in psutil.Process(pid).children(recursive=True))


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name) and not line.startswith("#"))


# Alerting samples sent beside the load: (vital, value). The expected rule of each is written from the
# published sources (docs/clinical-rules.md cites them), not read back from rules.yaml.
FAST_PATH_CASES = [("spo2", 81.0), ("temperature", 38.5)]
SPO2_EMERGENCY_BELOW = 85.0  # the sensor's own emergency threshold: SpO2 < 85 % is hypoxia_emergency at any age
FEVER_AT_LEAST_C = 38.5  # NHLBI 2014: seek care at once at 38.5 degC (101.3 degF) or more -> fever
INFANT_BELOW_YEARS = 1.0  # NICE feverish-child red flags: under 1 year, 38.0 degC already -> fever_infant (replaces fever)
INFANT_FEVER_AT_LEAST_C = 38.0
DAYS_PER_YEAR = 365.25


def expected_rule(vital: str, value: float, age_years: float) -> str:
    """The rule the published sources give for one alerting sample of a patient of ``age_years``."""
    if vital == "spo2" and value < SPO2_EMERGENCY_BELOW:
        return "hypoxia_emergency"
    if vital == "temperature" and age_years < INFANT_BELOW_YEARS and value >= INFANT_FEVER_AT_LEAST_C:
        return "fever_infant"
    if vital == "temperature" and value >= FEVER_AT_LEAST_C:
        return "fever"
    raise ValueError(f"no alerting rule for {vital} {value} at {age_years:.2f} years")


def _fast_path(url: str, fleet, secrets: dict[str, str], database_url: str, samples: int, spread_s: float = 0.0) -> list[dict]:
    """POST of a reading crossing a single-reading rule to its alert row, for ``samples`` patients.

    With ``spread_s``, the samples are spread over that many seconds: run beside the load, they
    measure the fast path under it. One entry per sample: patient, age, vital, value, the expected
    rule, ``seconds`` to its alert row (None when no row came within 10 s) and the rules the patient
    has alert rows of.
    """
    import psycopg

    from ingestion.auth import signed_headers

    outcomes = []
    moment = datetime.now(timezone.utc).replace(microsecond=0)
    readings = fleet.readings(moment, moment + timedelta(seconds=30))
    began = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as connection:
        for index in range(samples):
            pause = began + index * spread_s / max(samples, 1) - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            reading = readings[index]
            vital, value = FAST_PATH_CASES[index % len(FAST_PATH_CASES)]
            measured_at = datetime.fromisoformat(reading["timestamp"])
            birth = fleet.birth_dates[fleet.patient_index(reading["patient_id"])]
            age_years = (measured_at.date() - birth).days / DAYS_PER_YEAR
            rule_id = expected_rule(vital, value, age_years)
            reading["vitals"][vital] = value
            body = json.dumps(reading).encode()
            headers = {"Content-Type": "application/json", **signed_headers(reading["device_id"], secrets[reading["device_id"]], body, precise=True)}
            started = time.perf_counter()
            httpx.post(f"{url}/v1/vitals", content=body, headers=headers, timeout=10).raise_for_status()
            seconds = None
            while time.perf_counter() - started < 10:
                if connection.execute("SELECT 1 FROM kidjamo.alerts WHERE patient_id = %s AND rule_id = %s AND last_reading_at >= %s",
                                      (reading["patient_id"], rule_id, measured_at)).fetchone():
                    seconds = time.perf_counter() - started
                    break
                time.sleep(0.01)
            fired = [row[0] for row in connection.execute(
                "SELECT rule_id FROM kidjamo.alerts WHERE patient_id = %s ORDER BY rule_id", (reading["patient_id"],))]
            outcomes.append({"patient_id": reading["patient_id"], "age_years": round(age_years, 2), "vital": vital, "value": value,
                             "expected_rule": rule_id, "seconds": seconds, "alert_rules": fired})
    return outcomes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.ingestion_load", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4000.0, help="offered readings per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--batch", type=int, default=10, help="readings per request (sensors send up to 10)")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--fast-path-samples", type=int, default=40, help="alerting readings sent during the load")
    args = parser.parse_args(argv)

    from ingestion.simulator.fleet import Fleet, provision_fleet, read_secrets
    from kidjamo.warehouse import migrations
    from kidjamo.warehouse.embedded_pg import EmbeddedPostgres, free_port
    from kidjamo.lake.storage import Lake
    from kidjamo.settings import get_settings

    home = Path(tempfile.mkdtemp(prefix="kidjamo-bench-ingest-"))
    os.chmod(home, 0o755)  # the embedded server runs as another user when we are root
    server = None
    database_url = os.environ.get("KIDJAMO_DATABASE_URL")
    if not database_url:
        server = EmbeddedPostgres(home / "pg")
        database_url = server.start()
    service = None
    try:
        migrations.migrate(database_url)
        fleet = Fleet.generate(args.devices, seed=5)
        provision_fleet(database_url, fleet, home / "secrets.json", pseudonym_key=get_settings().pseudonym_key)
        secrets = read_secrets(home / "secrets.json")
        readings_needed = int(args.rate * args.duration) + args.batch * args.devices
        readings_per_device = max(args.batch, -(-readings_needed // args.devices))
        requests = _prepare_requests(fleet, secrets, readings_per_device, args.batch)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        lake = Lake(f"file://{home / 'lake'}")
        environment = {**{k: v for k, v in os.environ.items() if not k.startswith("KIDJAMO_")},
                       "KIDJAMO_HOME": str(home), "KIDJAMO_DATABASE_URL": database_url, "KIDJAMO_LAKE_URL": lake.root_url,
                       # the load is spread over the fleet; a device bursts at most --batch readings at once
                       "KIDJAMO_INGEST_BURST_PER_DEVICE": str(max(60, readings_per_device))}
        service = subprocess.Popen([KIDJAMO, "ingest", "serve", "--port", str(port), "--log-level", "warning"],
                                   env=environment, stdout=open(home / "service.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the service did not get ready; see {home / 'service.log'}")

        before = httpx.get(f"{url}/metrics").text
        cpu_before, load_before = _cpu_seconds(service.pid), os.getloadavg()[0]
        fast_path_cpu_before = _children_cpu_seconds(service.pid)
        # The fast path is measured under the load: samples spread over it, from their own thread.
        fast_path: list[dict] = []
        sampler = threading.Thread(target=lambda: fast_path.extend(
            _fast_path(url, fleet, secrets, database_url, args.fast_path_samples, spread_s=args.duration * 0.8)))
        sampler.start()
        result = asyncio.run(_drive(url, requests, args.rate, args.batch, args.connections, args.duration))
        sampler.join()
        cpu_used, load_after = _cpu_seconds(service.pid) - cpu_before, os.getloadavg()[0]
        fast_path_cpu = _children_cpu_seconds(service.pid) - fast_path_cpu_before
        after = httpx.get(f"{url}/metrics").text
        group_commits = _metric(after, "kidjamo_ingest_group_commits_total") - _metric(before, "kidjamo_ingest_group_commits_total")
        service.terminate()  # a clean stop publishes the open minute: then landing holds only published files
        service.wait(60)
        landing_files = lake.list_files("landing/vitals")
        in_landing = sum(len(lake.read_bytes(f.path).splitlines()) for f in landing_files) - len(fast_path)
        latencies = result["latencies"]
        found = [sample["seconds"] for sample in fast_path if sample["seconds"] is not None]
        # Every alerting sample must have its row: a missing one is a patient-safety failure, not noise.
        missing = [{key: sample[key] for key in ("patient_id", "age_years", "vital", "value", "expected_rule", "alert_rules")}
                   for sample in fast_path if sample["seconds"] is None]
        report = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "load_average_before_after": [round(load_before, 1), round(load_after, 1)],
            "offered_readings_per_s": args.rate,
            "batch": args.batch,
            "requests": result["requests"],
            "statuses": result["statuses"],
            "accepted_readings": result["accepted"],
            "sustained_readings_per_s": round(result["accepted"] / result["wall_s"]),
            "latency_ms": {name: round(_percentile(latencies, q) * 1000, 1) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
            | {"max": round(max(latencies) * 1000, 1), "mean": round(statistics.fmean(latencies) * 1000, 1)},
            # CPU the service process used per request: its capacity on one free core, whatever else runs.
            "service_cpu_ms_per_request": round(cpu_used * 1000 / result["requests"], 3),
            "service_capacity_readings_per_core_s": round(result["accepted"] / cpu_used) if cpu_used else None,
            # The fast path judges every accepted reading in the service's worker process: its CPU, apart.
            "fast_path_worker_cpu_s_per_s": round(fast_path_cpu / result["wall_s"], 2),
            "group_commits_per_minute": round(group_commits * 60 / result["wall_s"]),
            "readings_per_group_commit": round(result["accepted"] / group_commits, 1) if group_commits else None,
            "landing_files": len(landing_files),
            "landing_minutes_spanned": len({f.path.rsplit("/", 1)[0] for f in landing_files}),
            "acknowledged_missing_from_landing": result["accepted"] - in_landing,
            "fast_path_under_load": {"samples": len(fast_path), "alert_rows_found": len(found),
                                     # per expected rule: its sample count and the alert rules those patients got
                                     "expected_rules": {rule: {"samples": sum(s["expected_rule"] == rule for s in fast_path),
                                                               "alert_rules_of_the_patients": sorted({r for s in fast_path if s["expected_rule"] == rule
                                                                                                      for r in s["alert_rules"]})}
                                                        for rule in sorted({s["expected_rule"] for s in fast_path})}}
            | ({name: round(_percentile(found, q) * 1000) for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))}
               | {"max_ms": round(max(found) * 1000)} if found else {})
            | ({"missing": missing} if missing else {}),
        }
        print(json.dumps(report, indent=1))
        if missing or len(fast_path) < args.fast_path_samples:
            for sample in missing:
                print(f"FAST PATH MISSED: {sample['patient_id']} ({sample['age_years']} y) {sample['vital']} {sample['value']}: "
                      f"no {sample['expected_rule']} alert row within 10 s (alert rows: {sample['alert_rules'] or 'none'})",
                      file=sys.stderr)
            raise SystemExit(f"fast path: {len(found)} of {args.fast_path_samples} alerting samples reached their alert row")
        return report
    finally:
        if service is not None:
            service.terminate()
            service.wait(20)
        if server is not None:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
