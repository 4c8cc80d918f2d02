"""End to end: real Prometheus and Alertmanager page on-call when the pipeline stalls, and say when it recovers.

On loopback: ``kidjamo metrics serve`` and the ingestion service are scraped by Debian's
``prometheus`` every second, with the repository's rule file; what fires goes to Debian's
Alertmanager, configured from the repository's ``alertmanager.yml`` with only its timings shortened
and its on-call URL pointed at a local webhook receiver. The pipeline's newest minute is 4 minutes
old ("stopped"), so "pipeline stalled" must reach the webhook; then a current minute is processed
("runs again") and the webhook must get "resolved".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from ingestion.simulator.fleet import Fleet, provision_fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.storage import Lake
from kidjamo.warehouse.embedded_pg import free_port
from tests.ingestion.conftest import KIDJAMO, ServiceProcess
from transforms.pipeline import process_interval

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
DEADLINE_S = 90


class WebhookReceiver:
    """A local HTTP server standing for the on-call webhook: it keeps every Alertmanager message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oncall"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, alertname: str, status: str) -> dict:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for message in list(self.messages):
                if any(a["labels"]["alertname"] == alertname and a["status"] == status for a in message["alerts"]):
                    return message
            time.sleep(0.5)
        raise AssertionError(f"no {status} {alertname} within {DEADLINE_S} s; received {self.messages}")


def _process_minute(lake: Lake, database_url: str, fleet: Fleet, arrival: datetime, run_id: str) -> None:
    write_landing(lake, arrival, fleet.readings(arrival - timedelta(minutes=1), arrival), name=run_id)
    process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=database_url, run_id=run_id)


def _serve(name: str, command: list[str], ready_url: str, folder: Path, processes: list, env: dict | None = None) -> None:
    """Start ``command`` (log in ``folder/<name>.log``), add it to ``processes``, wait until ``ready_url`` answers 200."""
    log = folder / f"{name}.log"
    process = subprocess.Popen(command, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    processes.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{name} did not answer {ready_url} within 60 s: {log.read_text()[-2000:]}")


def _serve_configured(name: str, binary: str, config: dict, storage_option: str, folder: Path, processes: list,
                      *options: str) -> int:
    """Start Prometheus or Alertmanager (``binary``) with ``config`` and its storage under ``folder``, on a free
    loopback port, as :func:`_serve` does; return the port."""
    config_file = folder / f"{name}.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    _serve(name, [binary, f"--config.file={config_file}", f"{storage_option}={folder / name}",
                  f"--web.listen-address=127.0.0.1:{port}", *options],
           f"http://127.0.0.1:{port}/-/ready", folder, processes)
    return port


@pytest.fixture
def monitored_pipeline(fresh_database_url: str, lake: Lake, tmp_path: Path):
    """Exporter, ingestion service, Prometheus and Alertmanager on loopback; yields (receiver, lake, fleet, url)."""
    assert PROMETHEUS and ALERTMANAGER, "prometheus and prometheus-alertmanager are installed by .ci/system-deps"
    fleet = Fleet.generate(4, seed=21)
    provision_fleet(fresh_database_url, fleet, tmp_path / "secrets.json", pseudonym_key="test-key")
    receiver = WebhookReceiver()
    processes: list[subprocess.Popen] = []
    service = ServiceProcess(tmp_path, lake, fresh_database_url, {}).start()
    try:
        environment = {name: value for name, value in os.environ.items() if not name.startswith("KIDJAMO_")}
        environment.update(KIDJAMO_HOME=str(tmp_path), KIDJAMO_DATABASE_URL=fresh_database_url,
                           KIDJAMO_LAKE_URL=lake.root_url)
        exporter_port = free_port()
        _serve("exporter", [KIDJAMO, "metrics", "serve", "--port", str(exporter_port)],
               f"http://127.0.0.1:{exporter_port}/metrics", tmp_path, processes, env=environment)

        alertmanager_config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        alertmanager_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1m")
        for route in alertmanager_config["route"]["routes"]:
            route.pop("repeat_interval", None)
        for hook in alertmanager_config["receivers"][0]["webhook_configs"]:
            hook["url"] = receiver.url
        alertmanager_port = _serve_configured("alertmanager", ALERTMANAGER, alertmanager_config, "--storage.path",
                                              tmp_path, processes, "--cluster.listen-address=")

        prometheus_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus" / "rules" / "kidjamo-system.rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
            "scrape_configs": [
                {"job_name": "kidjamo-exporter", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
                {"job_name": "kidjamo-ingestion", "static_configs": [{"targets": [f"127.0.0.1:{service.port}"]}]},
            ],
        }
        prometheus_port = _serve_configured("prometheus", PROMETHEUS, prometheus_config, "--storage.tsdb.path",
                                            tmp_path, processes, "--rules.alert.resend-delay=1s")
        yield receiver, lake, fleet, fresh_database_url, f"http://127.0.0.1:{prometheus_port}"
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        service.stop()
        receiver.server.shutdown()


def test_on_call_is_paged_when_the_pipeline_stalls_and_told_when_it_runs_again(monitored_pipeline):
    receiver, lake, fleet, database_url, prometheus = monitored_pipeline
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    _process_minute(lake, database_url, fleet, now - timedelta(minutes=5), "stalled-minute")  # newest: 4 min old

    firing = receiver.wait_for("KidjamoPipelineStalled", "firing")
    assert firing["receiver"] == "oncall"
    stalled = next(a for a in firing["alerts"] if a["labels"]["alertname"] == "KidjamoPipelineStalled")
    assert stalled["labels"]["kind"] == "system" and stalled["labels"]["severity"] == "critical"
    targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
    assert {(t["labels"]["job"], t["health"]) for t in targets} == {("kidjamo-exporter", "up"), ("kidjamo-ingestion", "up")}

    _process_minute(lake, database_url, fleet, datetime.now(timezone.utc).replace(second=0, microsecond=0)
                    - timedelta(minutes=1), "current-minute")
    resolved = receiver.wait_for("KidjamoPipelineStalled", "resolved")
    assert resolved["receiver"] == "oncall"
