"""Critical reading -> alert row, on the minute batch and on the fast path (DESIGN.md: p95 <= 75 s; <= 5 s).

In real time, for ``--minutes`` minutes: a fleet of ``--sensors`` posts its readings over HTTP to
the ingestion service (``kidjamo ingest serve``, which runs the fast path), every device every
30 s, each second the readings measured in that second; ``--critical`` of them, at random
seconds, carry SpO2 80 % (under the fast path's and the batch rules' thresholds). A real
``airflow standalone`` runs ``kidjamo_vitals`` on its every-minute schedule. A poller watches
``kidjamo.alert_readings`` and notes, per critical reading, when a row for it first exists (the
fast path attached it) and when the batch has seen it (a row with its lake lineage, raw_file).
Reported: median, p95 and max of both latencies, measured from the reading's timestamp.
Usage: ``python -m bench.alert_latency --sensors 1000 --minutes 10 --critical 40``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg

CRITICAL_SPO2 = 80.0
KIDJAMO = str(Path(sys.executable).parent / "kidjamo")


def _start_service(url: str, home: Path) -> tuple[subprocess.Popen, str]:
    from kidjamo.warehouse.embedded_pg import free_port

    port = free_port()
    environment = {**os.environ, "KIDJAMO_HOME": str(home), "KIDJAMO_DATABASE_URL": url}
    log = open(home / "service.log", "ab")
    process = subprocess.Popen([KIDJAMO, "ingest", "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--log-level", "warning"], env=environment, stdout=log, stderr=subprocess.STDOUT)
    service_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the ingestion service exited; see {home / 'service.log'}")
        try:
            if httpx.get(f"{service_url}/healthz", timeout=1).status_code == 200:
                return process, service_url
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the ingestion service did not answer /healthz")


class AlertWatcher(threading.Thread):
    """Polls kidjamo.alert_readings for the critical readings; notes when each is seen, and by whom."""

    def __init__(self, database_url: str, poll_s: float = 0.5):
        super().__init__(daemon=True)
        self.database_url, self.poll_s = database_url, poll_s
        self.critical: dict[tuple[str, datetime], float] = {}  # (device, measured_at) -> epoch of its timestamp
        self.fast_seen: dict[tuple[str, datetime], float] = {}
        self.batch_seen: dict[tuple[str, datetime], float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while not self.stopping.is_set():
                with self.lock:
                    pending = [key for key in self.critical if key not in self.batch_seen]
                if pending:
                    rows = connection.execute(
                        """SELECT r.device_id, r.measured_at, bool_or(r.raw_file IS NOT NULL)
                           FROM kidjamo.alert_readings AS r
                           JOIN unnest(%s::text[], %s::timestamptz[]) AS c(device_id, measured_at)
                             USING (device_id, measured_at)
                           GROUP BY 1, 2""",
                        ([device for device, _ in pending], [moment for _, moment in pending])).fetchall()
                    seen_at = time.time()
                    with self.lock:
                        for device, moment, by_batch in rows:
                            self.fast_seen.setdefault((device, moment), seen_at)
                            if by_batch:
                                self.batch_seen.setdefault((device, moment), seen_at)
                self.stopping.wait(self.poll_s)

    def latencies(self, seen: dict) -> list[float]:
        return sorted(seen[key] - measured for key, measured in self.critical.items() if key in seen)


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(round(share * (len(values) - 1))))] if values else float("nan")


async def _send_in_real_time(sender, fleet, watcher: AlertWatcher, minutes: int, critical_seconds: set[int]) -> int:
    """Each second, post the readings measured in the second before; criticals at the chosen seconds."""
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    sent = 0
    for second in range(minutes * 60):
        window_start = start + timedelta(seconds=second)
        await asyncio.sleep(max(0.0, (window_start + timedelta(seconds=1)).timestamp() - time.time()))
        readings = fleet.readings(window_start, window_start + timedelta(seconds=1))
        if second in critical_seconds and readings:
            reading = random.choice(readings)
            reading["vitals"]["spo2"] = CRITICAL_SPO2
            measured = datetime.fromisoformat(reading["timestamp"].replace("Z", "+00:00"))
            with watcher.lock:
                watcher.critical[(reading["device_id"], measured)] = measured.timestamp()
        await sender.send(readings)
        sent += len(readings)
    return sent


def _child(sensors: int, minutes: int, critical: int, seed: int) -> dict:
    from bench.airflow_standalone import airflow_standalone
    from bench.fleet import prepare
    from ingestion.simulator.fleet import provision_fleet, read_secrets
    from kidjamo.settings import get_settings
    from ingestion.simulator.senders import HttpSender

    random.seed(seed)
    home = Path(os.environ["KIDJAMO_HOME"])
    url, _, fleet = prepare(sensors, seed=seed)
    provision_fleet(url, fleet, home / "secrets.json", pseudonym_key=get_settings().pseudonym_key)
    service, service_url = _start_service(url, home)
    watcher = AlertWatcher(url)
    try:
        with airflow_standalone(url):
            watcher.start()
            sender = HttpSender(service_url, read_secrets(home / "secrets.json"), spool_dir=home / "spool")
            # Criticals at random seconds, none in the last 30 s (their device must have reported first).
            critical_seconds = set(random.sample(range(30, minutes * 60), critical))
            sent = asyncio.run(_send_in_real_time(sender, fleet, watcher, minutes, critical_seconds))
            deadline = time.monotonic() + 240  # the last minute's run, and any behind it
            while len(watcher.batch_seen) < len(watcher.critical) and time.monotonic() < deadline:
                time.sleep(1)
    finally:
        watcher.stopping.set()
        service.terminate()
        service.wait(timeout=30)
    batch, fast = watcher.latencies(watcher.batch_seen), watcher.latencies(watcher.fast_seen)
    return {"sensors": sensors, "minutes": minutes, "readings_sent": sent, "critical": len(watcher.critical),
            "batch_seen": len(batch), "fast_seen": len(fast),
            "batch_s": {"median": round(statistics.median(batch), 1) if batch else None,
                        "p95": round(_percentile(batch, 0.95), 1), "max": round(max(batch), 1) if batch else None},
            "fast_s": {"median": round(statistics.median(fast), 2) if fast else None,
                       "p95": round(_percentile(fast, 0.95), 2), "max": round(max(fast), 2) if fast else None}}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--critical", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.sensors, args.minutes, args.critical, args.seed)))
        return None
    from bench.fleet import load_average, run_in_fresh_home

    result = run_in_fresh_home("bench.alert_latency", ["--sensors", str(args.sensors), "--minutes", str(args.minutes),
                                                       "--critical", str(args.critical), "--seed", str(args.seed)])
    print(f"{result['sensors']} sensors for {result['minutes']} min, {result['readings_sent']:,} readings, "
          f"{result['critical']} critical; load average {load_average()}")
    print(f"minute batch: seen {result['batch_seen']}/{result['critical']}, median {result['batch_s']['median']} s, "
          f"p95 {result['batch_s']['p95']} s, max {result['batch_s']['max']} s (target p95 <= 75 s)")
    print(f"fast path:    seen {result['fast_seen']}/{result['critical']}, median {result['fast_s']['median']} s, "
          f"p95 {result['fast_s']['p95']} s, max {result['fast_s']['max']} s (target <= 5 s)")
    return result


if __name__ == "__main__":
    main()
