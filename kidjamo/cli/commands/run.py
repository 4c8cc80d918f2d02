"""``kidjamo run``: the whole system on embedded defaults (what ``make run`` starts).

Embedded PostgreSQL (migrated), the ingestion service, the simulator posting to it over HTTP, the
metrics exporter, ``airflow standalone`` with the DAGs unpaused, and the care-team app with a demo clinician.
With ``--minutes N`` it stops by itself after N
minutes, prints a summary from the database and stops every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx

from kidjamo.warehouse import database, migrations
from kidjamo.cli.airflow_env import airflow_environment, prepare_airflow
from kidjamo.settings import get_settings

BIN = Path(sys.executable).parent


@dataclass
class Services:
    """Processes started by this command, each in its own process group, stopped in reverse order."""

    log_dir: Path
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self.processes.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise click.ClickException(f"{name} exited with code {process.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # the group may hold children that outlived their parent


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _wait_for(url: str, what: str, timeout_s: float, services: Services) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.check_alive()
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise click.ClickException(f"{what} did not answer at {url} within {timeout_s:.0f} s")


@click.command("run")
@click.option("--minutes", type=click.IntRange(min=1), help="Stop by itself after N minutes and print a summary.")
@click.option("--patients", default=20, show_default=True, help="Size of the simulated fleet.")
@click.option("--ui-port", default=8080, show_default=True, help="Port of the Airflow UI.")
@click.option("--ingest-port", default=8000, show_default=True, help="Port of the ingestion service.")
@click.option("--metrics-port", default=9464, show_default=True, help="Port of the metrics exporter (/metrics).")
@click.option("--care-port", default=8090, show_default=True, help="Port of the care-team app.")
def command(minutes: int | None, patients: int, ui_port: int, ingest_port: int, metrics_port: int, care_port: int) -> None:
    """Start PostgreSQL, the ingestion service, the simulator and Airflow; Ctrl-C (or --minutes) stops them."""
    settings = get_settings()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    services = Services(settings.log_dir)
    started_database = settings.uses_embedded_database and not database.embedded_server(settings).is_running()
    try:
        url = database.ensure_database(settings)
        migrations.migrate(url)
        database.ensure_component_logins(settings)
        click.echo(f"PostgreSQL        {database.embedded_server(settings).root if settings.uses_embedded_database else 'external'}")
        # Airflow's tasks connect as the pipeline's own login, not as the owner.
        env = {**os.environ, **airflow_environment(settings, api_port=ui_port),
               "AIRFLOW_CONN_KIDJAMO_POSTGRES": database.component_url("pipeline", settings),
               "KIDJAMO_HOME": str(settings.home),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # standalone starts `airflow` by name
        prepare_airflow(str(BIN / "airflow"), env)

        ingest_url = f"http://127.0.0.1:{ingest_port}"
        services.start("ingestion", [str(BIN / "kidjamo"), "ingest", "serve", "--host", "127.0.0.1", "--port", str(ingest_port)], env)
        _wait_for(f"{ingest_url}/healthz", "the ingestion service", 60, services)
        click.echo(f"Ingestion service {ingest_url}  (API docs: {ingest_url}/docs)")
        services.start("simulator", [str(BIN / "kidjamo"), "simulate", "--patients", str(patients), "--mode", "http",
                                     "--url", ingest_url, "--realtime", "--provision", "--hypoxia", "--no-progress"], env)
        click.echo(f"Simulator         {patients} patients posting every 30 s (patient 1 has a hypoxia episode)")

        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        services.start("exporter", [str(BIN / "kidjamo"), "metrics", "serve", "--host", "127.0.0.1", "--port", str(metrics_port)], env)
        _wait_for(metrics_url, "the metrics exporter", 60, services)
        click.echo(f"Metrics exporter  {metrics_url}  (Prometheus rules: deploy/prometheus/)")

        care_url = f"http://127.0.0.1:{care_port}"
        login, password = _demo_clinician(url, settings, patients)
        # Plain http on loopback: browsers keep Secure cookies for localhost, curl and some others do not.
        services.start("care", [str(BIN / "kidjamo"), "care", "serve", "--host", "127.0.0.1", "--port", str(care_port)],
                       {**env, "KIDJAMO_CARE_COOKIE_SECURE": "false"})
        _wait_for(f"{care_url}/healthz", "the care-team app", 60, services)
        click.echo(f"Care-team app     {care_url}  (demo clinician {login}, password {password})")

        services.start("airflow", [str(BIN / "airflow"), "standalone"], env)
        _wait_for(f"http://127.0.0.1:{ui_port}/api/v2/monitor/health", "the Airflow UI", 240, services)
        password_file = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
        click.echo(f"Airflow UI        http://localhost:{ui_port}  (user admin, password in {password_file})")
        click.echo(f"Logs              {settings.log_dir}")
        deadline = time.monotonic() + minutes * 60 if minutes else None
        click.echo(f"Running for {minutes} minute(s)..." if minutes else "Running; press Ctrl-C to stop.")
        while deadline is None or time.monotonic() < deadline:
            services.check_alive()
            time.sleep(2)
        click.echo(summary(url))
    except KeyboardInterrupt:
        click.echo("stopping...")
    finally:
        services.stop()
        if started_database:
            database.embedded_server(settings).stop()


def _demo_clinician(url: str, settings, patients: int) -> tuple[str, str]:
    """The demo clinician of the simulated patient 1's care team (kept in $KIDJAMO_HOME/care/demo-login.json)."""
    import secrets

    from care.auth import provision_clinician
    from ingestion.simulator.fleet import Fleet

    stored = settings.home / "care" / "demo-login.json"
    if stored.exists():
        demo = json.loads(stored.read_text())
        login, password = demo["login"], demo["password"]
    else:
        login, password = "demo.nurse", secrets.token_urlsafe(12)
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.touch(mode=0o600)
        stored.write_text(json.dumps({"login": login, "password": password}))
    team = Fleet.generate(patients, seed=0).care_teams[0]  # the simulator's default seed: patient 1 has the hypoxia episode
    with database.connect(url, application_name="kidjamo-run") as connection:
        provision_clinician(connection, login, [team], password)
    return login, password


def summary(url: str) -> str:
    """Readings per layer (runs that reached the warehouse), quarantine reasons and alerts by severity."""
    with database.connect(url) as connection:
        steps = dict(connection.execute(
            """
            SELECT step, jsonb_build_object(
                'runs', count(*), 'raw', sum((counts->>'raw_records')::bigint),
                'bronze', sum((counts->>'bronze_rows')::bigint), 'silver', sum((counts->>'silver_rows')::bigint),
                'gold', sum((counts->>'gold_rows')::bigint))
            FROM kidjamo.pipeline_runs AS r
            WHERE status = 'success'
              AND EXISTS (SELECT 1 FROM kidjamo.pipeline_runs AS l
                          -- the shards of one run (KIDJAMO_SHARDS) are <run>#shard-k-of-n
                          WHERE split_part(l.run_id, '#shard-', 1) = split_part(r.run_id, '#shard-', 1)
                            AND l.step = 'load' AND l.status = 'success')
            GROUP BY step
            """
        ).fetchall())
        measurements = connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0]
        quarantine = connection.execute("SELECT reason, count(*) FROM kidjamo.quarantine GROUP BY 1 ORDER BY 2 DESC").fetchall()
        alerts = connection.execute(
            "SELECT severity, count(*) FROM kidjamo.alerts GROUP BY 1 ORDER BY array_position(ARRAY['critical','high','warning','info'], severity)"
        ).fetchall()
    runs = (steps.get("to_raw") or {}).get("runs") or 0
    lines = [
        "",
        "Summary (from PostgreSQL)",
        f"  pipeline runs      {runs} (loaded into the warehouse)",
        f"  raw readings       {(steps.get('to_bronze') or {}).get('raw') or 0}",
        f"  bronze rows        {(steps.get('to_bronze') or {}).get('bronze') or 0}",
        f"  silver rows        {(steps.get('to_silver') or {}).get('silver') or 0}",
        f"  gold rows          {(steps.get('to_gold') or {}).get('gold') or 0}",
        f"  measurements       {measurements}",
        f"  quarantined        {sum(n for _, n in quarantine)}" + (f"  ({', '.join(f'{r}: {n}' for r, n in quarantine)})" if quarantine else ""),
        f"  alerts             {sum(n for _, n in alerts)}" + (f"  ({', '.join(f'{s}: {n}' for s, n in alerts)})" if alerts else ""),
    ]
    return "\n".join(lines) + "\n" + json.dumps({"measurements": measurements, "alerts": dict(alerts)})
