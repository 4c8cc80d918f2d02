"""Soak: the simulated fleet for N real minutes through the real service and minute pipeline, with faults.

Real components: embedded PostgreSQL, ``kidjamo ingest serve`` in its own process, the simulator
posting over HTTP (retries, local spool), and every minute run of the pipeline in its own process,
as an Airflow task runs (``process_interval`` with the landing backlog drained, retried twice on
failure). Faults injected, spread over the run:

- the ingestion service SIGKILLed mid-minute, restarted 5 s later on the same journal;
- a minute run SIGKILLed in the middle of its steps, then retried;
- the scheduler paused for 3 minutes (their runs never happen: ``catchup=False``);
- one device flooding a minute with acknowledged but implausible readings (SpO2 150).

At the end the service is stopped, the last minutes are run until landing is empty, and the
acknowledged readings (unique message ids that got a 202) are compared with the readings in silver
and in quarantine (lake). Usage: ``python -m bench.soak --minutes 30 --sensors 50`` (``--minutes 5``
for a short run). Prints a JSON report; exits 1 if an acknowledged reading is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

KIDJAMO = str(Path(sys.executable).parent / "kidjamo")
RUN_RETRIES = 2  # as the DAG's default_args


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Service:
    """``kidjamo ingest serve`` in its own process (kill and restart keep its journal)."""

    def __init__(self, environment: dict, log_path: Path):
        self.environment = environment
        self.port = _free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import httpx

        self.process = subprocess.Popen([KIDJAMO, "ingest", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--log-level", "warning"], env=self.environment,
                                        stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the ingestion service did not start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def _run_id(arrival: datetime) -> str:
    return f"soak-{arrival:%H%M}"


def _kill_after_first_step(child: subprocess.Popen, database_url: str, run_id: str) -> None:
    """SIGKILL the run once its first step is recorded: it dies in the middle of its steps."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        while child.poll() is None:
            if connection.execute("SELECT count(*) FROM kidjamo.pipeline_runs WHERE run_id = %s", (run_id,)).fetchone()[0]:
                child.send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)


def _run_minute(arrival: datetime, environment: dict, *, kill: bool = False) -> dict:
    """One minute run in its own process (like an Airflow task), retried on failure; killed once if asked."""
    attempts, killed = 0, False
    while True:
        attempts += 1
        child = subprocess.Popen([sys.executable, "-m", "bench.soak", "--run-minute", arrival.isoformat()], env=environment,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kill and not killed:
            _kill_after_first_step(child, environment["KIDJAMO_DATABASE_URL"], _run_id(arrival))
            killed = True
        stdout, stderr = child.communicate()
        if child.returncode == 0:
            return {"arrival": arrival.isoformat(), "attempts": attempts, "killed": killed, **json.loads(stdout.splitlines()[-1])}
        if attempts > RUN_RETRIES + (1 if killed else 0):
            return {"arrival": arrival.isoformat(), "attempts": attempts, "killed": killed, "failed": stderr[-2000:]}


def _child_run(arrival: datetime) -> None:
    from kidjamo.warehouse.database import database_url
    from kidjamo.lake.storage import Lake
    from transforms.pipeline import process_interval

    counts = process_interval(arrival - timedelta(minutes=1), arrival, lake=Lake.from_settings(), database_url=database_url(),
                              run_id=_run_id(arrival), drain_landing_backlog=True)
    print(json.dumps({"backlog_files": counts["to_raw"].get("backlog_files", 0), "silver": counts["to_silver"]["silver_rows"],
                      "flooding_devices": counts["gate_bronze"].get("flooding_devices", [])}))


async def _flood(url: str, device_id: str, patient_id: str, secret: str, readings: int) -> list[str]:
    """One device posting ``readings`` implausible readings (SpO2 150) as fast as it can; the acknowledged ids."""
    import httpx

    from ingestion.auth import signed_headers

    acknowledged: list[str] = []
    now = datetime.now(timezone.utc)
    async with httpx.AsyncClient(timeout=10) as client:
        for first in range(0, readings, 10):
            batch = [{"device_id": device_id, "patient_id": patient_id, "message_id": f"flood-{first + i}",
                      "timestamp": (now - timedelta(milliseconds=10 * (first + i))).isoformat().replace("+00:00", "Z"),
                      "vitals": {"spo2": 150, "heart_rate": 80, "temperature": 36.8}} for i in range(10)]
            body = json.dumps(batch).encode()
            for _ in range(5):
                try:
                    response = await client.post(f"{url}/v1/vitals", content=body, headers={
                        "Content-Type": "application/json", **signed_headers(device_id, secret, body, precise=True)})
                except httpx.TransportError:
                    await asyncio.sleep(1)
                    continue
                if response.status_code == 202:
                    acknowledged += [r["message_id"] for r in response.json()["results"] if r["status"] != "rejected"]
                    break
                await asyncio.sleep(1)
    return acknowledged


def _lake_message_ids(lake) -> tuple[Counter, Counter]:
    """message_id -> times in silver; message_id -> reasons in quarantine (from the original text)."""
    silver, quarantine = Counter(), Counter()
    for lake_file in lake.list_files("silver/vitals"):
        if lake_file.path.endswith(".parquet"):
            silver.update(lake.read_parquet([lake_file.path])["message_id"].to_pylist())
    for lake_file in lake.list_files("quarantine/vitals"):
        if lake_file.path.endswith(".parquet"):
            table = lake.read_parquet([lake_file.path])
            for text, reason in zip(table["original_text"].to_pylist(), table["reason"].to_pylist()):
                try:
                    quarantine[(json.loads(text).get("message_id"), reason)] += 1
                except (ValueError, AttributeError):
                    quarantine[(None, reason)] += 1
    return silver, quarantine


def soak(minutes: int, sensors: int) -> dict:
    from ingestion.simulator.fleet import Fleet, provision_fleet, read_secrets
    from ingestion.simulator.senders import HttpSender, run_simulation
    from kidjamo.warehouse import migrations
    from kidjamo.warehouse.database import ensure_database
    from kidjamo.lake.landing import landing_backlog
    from kidjamo.settings import get_settings
    from kidjamo.lake.storage import Lake

    home = Path(os.environ["KIDJAMO_HOME"])
    url = ensure_database()
    migrations.migrate(url)
    fleet = Fleet.generate(sensors, seed=12)
    provision_fleet(url, fleet, home / "secrets.json", pseudonym_key=get_settings().pseudonym_key)
    secrets = read_secrets(home / "secrets.json")
    environment = {**os.environ, "KIDJAMO_DATABASE_URL": url, "KIDJAMO_INGEST_RATE_PER_DEVICE": "1000",
                   "KIDJAMO_INGEST_BURST_PER_DEVICE": "1000"}
    lake = Lake.from_settings()
    service = Service(environment, home / "service.log")
    service.start()

    start = _minute(datetime.now(timezone.utc)) + timedelta(minutes=1)
    end = start + timedelta(minutes=minutes)
    step = max(1, minutes // 6)
    faults = {"service_kill_minute": 1, "task_kill_run": 2, "flood_minute": 1 + step, "paused_runs": [2 + 2 * step + i for i in range(3)]}
    outcome: dict = {}

    async def simulate() -> None:
        sender = HttpSender(service.url, secrets, spool_dir=home / "spool", max_attempts=3, first_backoff_s=0.5)
        await run_simulation(fleet, sender, start=start, end=end, realtime=True, step_s=10)
        await sender.drain_spool(attempts=120, pause_s=0.5)
        await sender.close()
        outcome["stats"] = sender.stats

    simulator = threading.Thread(target=lambda: asyncio.run(simulate()), name="simulator")
    simulator.start()
    flooding_device, flooding_patient = fleet.device_ids[-1], fleet.patient_ids[-1]
    runs, flood_ids, events = [], [], []
    for index in range(1, minutes + 1):
        boundary = start + timedelta(minutes=index)
        if index == faults["service_kill_minute"]:
            time.sleep(max(0.0, (boundary - timedelta(seconds=40) - datetime.now(timezone.utc)).total_seconds()))
            service.kill()
            events.append(f"{datetime.now(timezone.utc):%H:%M:%S} ingestion service killed")
            time.sleep(5)
            service.start()
            events.append(f"{datetime.now(timezone.utc):%H:%M:%S} ingestion service restarted")
        if index == faults["flood_minute"]:
            time.sleep(max(0.0, (boundary - timedelta(seconds=30) - datetime.now(timezone.utc)).total_seconds()))
            flood_ids = asyncio.run(_flood(service.url, flooding_device, flooding_patient, secrets[flooding_device], 200))
            events.append(f"{datetime.now(timezone.utc):%H:%M:%S} {flooding_device} flooded {len(flood_ids)} acknowledged readings")
        time.sleep(max(0.0, (boundary + timedelta(seconds=2) - datetime.now(timezone.utc)).total_seconds()))
        if index in faults["paused_runs"]:
            events.append(f"{boundary:%H:%M} scheduler paused: no run")
            continue
        runs.append(_run_minute(boundary, environment, kill=index == faults["task_kill_run"]))
    simulator.join()
    service.stop()  # publishes the last minute
    for _ in range(3):  # the runs after the simulation, until landing is empty
        boundary = _minute(datetime.now(timezone.utc)) + timedelta(minutes=1)
        time.sleep(max(0.0, (boundary + timedelta(seconds=2) - datetime.now(timezone.utc)).total_seconds()))
        runs.append(_run_minute(boundary, environment))
        if landing_backlog(lake, datetime.now(timezone.utc)).files == 0:
            break

    stats = outcome["stats"]
    acknowledged = set(stats.acknowledged_ids) | set(flood_ids)
    silver, quarantine = _lake_message_ids(lake)
    quarantined_ids = {message_id for message_id, _ in quarantine}
    reasons = Counter()
    for (_, reason), n in quarantine.items():
        reasons[reason] += n
    missing = sorted(acknowledged - set(silver) - quarantined_ids)
    backlog = landing_backlog(lake, datetime.now(timezone.utc))
    return {
        "minutes": minutes, "sensors": sensors, "faults": faults, "events": events,
        "acknowledged": len(acknowledged), "in_silver": len(acknowledged & set(silver)),
        "in_quarantine_only": len((acknowledged & quarantined_ids) - set(silver)),
        "missing": len(missing), "missing_sample": missing[:10],
        "silver_duplicates": sum(n - 1 for n in silver.values() if n > 1),
        "quarantine_rows_by_reason": dict(reasons),
        "simulator": stats.as_dict(),
        "runs": len(runs), "run_attempts": sum(r["attempts"] for r in runs), "failed_runs": [r for r in runs if "failed" in r],
        "backlog_files_drained": sum(r.get("backlog_files", 0) for r in runs),
        "flooding_devices": sorted({d for r in runs for d in r.get("flooding_devices", [])}),
        "landing_left": backlog.files, "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--run-minute", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_minute:
        _child_run(datetime.fromisoformat(args.run_minute))
        return {}
    if args.minutes < 5:
        parser.error("--minutes must be at least 5 (the faults need room)")
    with tempfile.TemporaryDirectory(prefix="kidjamo-soak-") as home:
        os.environ["KIDJAMO_HOME"] = home
        os.environ.pop("KIDJAMO_DATABASE_URL", None)
        try:
            report = soak(args.minutes, args.sensors)
        finally:
            subprocess.run([KIDJAMO, "db", "stop"], env=os.environ.copy(), capture_output=True)
    print(json.dumps(report, indent=1, default=str))
    if report["missing"]:
        sys.exit(1)
    return report


if __name__ == "__main__":
    main()
