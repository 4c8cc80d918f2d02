"""The Airflow UI as operators use it, in a real headless Chromium (Debian's) driven by Playwright.

One ``airflow standalone`` (LocalExecutor, SQLite metadata) is started on a free port against a
temporary ``KIDJAMO_HOME`` whose lake holds simulated landing minutes and whose warehouse is a
fresh database on the session's PostgreSQL. The test logs in with the generated admin password
and checks that every DAG is listed without import errors, that ``kidjamo_vitals`` triggered for a
landed minute succeeds, that a 3-minute backfill (REST API, as the UI's backfill form does)
completes, and that ``kidjamo_reprocess``'s trigger form rejects an inverted interval with a
clear message. Screenshots go to ``test-artifacts/ui/`` with Airflow's own log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest

from kidjamo.warehouse import migrations
from kidjamo.cli.airflow_env import PROJECT_ROOT, airflow_environment, start_standalone
from kidjamo.settings import Settings
from kidjamo.lake.storage import Lake

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
EXPECTED_DAGS = {"kidjamo_vitals", "kidjamo_reprocess", "kidjamo_maintenance", "kidjamo_maintenance_hourly",
                 "kidjamo_notifications"}
AIRFLOW = str(Path(sys.executable).parent / "airflow")
PATIENTS = 6
UI_TIMEOUT_MS = 60_000


@dataclass
class AirflowUI:
    base_url: str
    password: str
    api: httpx.Client
    lake: Lake
    database_url: str
    first_minute: datetime  # the first landed arrival minute; five consecutive minutes are landed
    readings_per_minute: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole group (api-server, scheduler, dag-processor, triggerer, tasks), then SIGKILL what is left."""
    for signum, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.wait(timeout=5)
                return
            time.sleep(0.5)


def _wait_until(condition, what: str, timeout_s: float, process: subprocess.Popen | None = None, interval_s: float = 2):
    """Poll ``condition()`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"airflow standalone exited with code {process.returncode} while waiting for {what}; "
                        f"see {ARTIFACTS / 'airflow-standalone.log'}")
        try:
            result = condition()
            if result:
                return result
        except (httpx.HTTPError, KeyError, ValueError) as error:
            last_error = error
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def _post(api: httpx.Client, path: str, body: dict) -> httpx.Response:
    """POST, retrying while Airflow answers 503: SQLite metadata is briefly locked under concurrent writes."""
    for _ in range(15):
        response = api.post(path, json=body)
        if response.status_code != 503:
            return response
        time.sleep(2)
    return response


def _healthy(base_url: str) -> bool:
    health = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5).json()
    return all(health[component]["status"] == "healthy" for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"))


def _land_minutes(lake: Lake, database_url: str, registry_dir: Path, first_minute: datetime, count: int) -> int:
    from ingestion.simulator.fleet import Fleet
    from ingestion.simulator.payloads import write_landing
    from transforms.registry import import_registry

    fleet = Fleet.generate(PATIENTS, seed=5)
    import_registry(fleet.write_registry_csv(registry_dir / "registry.csv"), database_url, pseudonym_key="test-key")
    per_minute = 0
    for offset in range(count):
        arrival = first_minute + timedelta(minutes=offset)
        readings = fleet.readings(arrival - timedelta(minutes=1), arrival)
        write_landing(lake, arrival, readings, name="sensors-batch")
        per_minute = len(readings)
    return per_minute


@pytest.fixture(scope="module")
def airflow_ui(postgres_server, tmp_path_factory):
    """``airflow standalone`` on a free port, healthy, with landed minutes; stopped (whole group) afterwards."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path_factory.mktemp("ui-kidjamo-home")
    admin_url = postgres_server.url("postgres")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute('DROP DATABASE IF EXISTS "ui_airflow" WITH (FORCE)')
        connection.execute('CREATE DATABASE "ui_airflow"')
    database_url = postgres_server.url("ui_airflow")
    migrations.migrate(database_url)

    port = _free_port()
    settings = Settings(home=home)
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("KIDJAMO_", "AIRFLOW"))},
        **airflow_environment(settings, api_port=port, parallelism=4),
        "KIDJAMO_HOME": str(home),
        # This home has no embedded server of its own: the session's database counts as external.
        "KIDJAMO_PSEUDONYM_KEY": os.environ["KIDJAMO_PSEUDONYM_KEY"],
        "AIRFLOW_CONN_KIDJAMO_POSTGRES": database_url,
        # Only kidjamo_vitals is unpaused below: the maintenance DAGs would otherwise start at once.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        # standalone starts its components as `airflow …` from PATH.
        "PATH": os.pathsep.join([str(Path(AIRFLOW).parent), os.environ.get("PATH", "")]),
    }
    log_path = home / "airflow-standalone.log"
    process = start_standalone(AIRFLOW, environment, log_path)
    base_url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base_url, timeout=120)
    try:
        _wait_until(lambda: _healthy(base_url), "Airflow's api-server, scheduler, dag-processor and triggerer", 300, process)
        password_file = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(password_file.read_text())["admin"]
        token = api.post("/auth/token", json={"username": "admin", "password": password}).raise_for_status().json()["access_token"]
        api.headers["Authorization"] = f"Bearer {token}"

        lake = Lake(f"file://{home / 'lake'}")
        # Minutes well before Airflow started: no scheduled run of kidjamo_vitals exists for them.
        first_minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=15)
        per_minute = _land_minutes(lake, database_url, home, first_minute, 5)
        yield AirflowUI(base_url, password, api, lake, database_url, first_minute, per_minute)
    finally:
        api.close()
        _stop_process_group(process)
        shutil.copyfile(log_path, ARTIFACTS / "airflow-standalone.log")


@pytest.fixture(scope="module")
def page(browser, airflow_ui):
    """A browser page logged in through the sign-in form with the generated admin password."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{airflow_ui.base_url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(airflow_ui.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{airflow_ui.base_url}/")
    yield page
    context.close()


@pytest.fixture(scope="module")
def started_runs(airflow_ui):
    """The manual run of the first landed minute and the backfill of three later minutes, both started at once."""
    api = airflow_ui.api
    listed = _wait_until(
        lambda: EXPECTED_DAGS <= {dag["dag_id"] for dag in api.get("/api/v2/dags", params={"limit": 100}).json()["dags"]},
        "the DAG processor to list every DAG", 180)
    assert listed
    # Both are created while the DAG is still paused: the scheduler is not writing to SQLite for it yet.
    manual_minute = airflow_ui.first_minute
    manual = _post(api, "/api/v2/dags/kidjamo_vitals/dagRuns", {
        "dag_run_id": "ui_test_manual",
        # A manual run covers the minute that ends at its logical date (README, "What runs where").
        "logical_date": (manual_minute + timedelta(minutes=1)).isoformat(),
        "note": "UI test: the first landed minute",
    }).raise_for_status().json()
    assert manual["data_interval_start"].startswith(manual_minute.strftime("%Y-%m-%dT%H:%M"))

    backfill_from = manual_minute + timedelta(minutes=2)
    backfill = _post(api, "/api/v2/backfills", {
        "dag_id": "kidjamo_vitals",
        "from_date": backfill_from.isoformat(),
        "to_date": (backfill_from + timedelta(minutes=2)).isoformat(),
        # One at a time: on a 2-core machine concurrent runs push the GX gates past their task timeout.
        "max_active_runs": 1,
        "reprocess_behavior": "none",
    }).raise_for_status().json()
    api.patch("/api/v2/dags/kidjamo_vitals", json={"is_paused": False}).raise_for_status()
    return {"manual_run_id": manual["dag_run_id"], "backfill_id": backfill["id"], "backfill_from": backfill_from}


def _run_state(api: httpx.Client, run_id: str) -> str:
    return api.get(f"/api/v2/dags/kidjamo_vitals/dagRuns/{run_id}").raise_for_status().json()["state"]


def test_every_dag_is_listed_without_import_errors(page, airflow_ui, started_runs):
    assert airflow_ui.api.get("/api/v2/importErrors").json()["total_entries"] == 0
    assert airflow_ui.api.get("/api/v2/plugins/importErrors").json()["total_entries"] == 0
    plugins = {plugin["name"] for plugin in airflow_ui.api.get("/api/v2/plugins").json()["plugins"]}
    assert "kidjamo_trigger_checks" in plugins
    page.goto(f"{airflow_ui.base_url}/dags")
    page.get_by_text(re.compile(r"^\d+ Dags$")).wait_for()
    for dag_id in sorted(EXPECTED_DAGS):
        page.get_by_role("link", name=dag_id, exact=True).first.wait_for()
    assert page.get_by_text(re.compile("Import Error", re.IGNORECASE)).count() == 0
    page.screenshot(path=str(ARTIFACTS / "dag-list.png"), full_page=True)


def test_reprocess_trigger_form_rejects_an_inverted_interval(page, airflow_ui):
    page.goto(f"{airflow_ui.base_url}/dags/kidjamo_reprocess")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Advanced Options").click()
    # The configuration JSON and the parameter fields are two views of the same values.
    dialog.locator(".monaco-editor").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps({"start": "2026-11-25T09:00:00+00:00", "end": "2026-11-25T08:00:00+00:00"}))
    dialog.get_by_text("Run Parameters").click()
    dialog.get_by_role("button", name="Trigger").click()

    message = dialog.get_by_text(re.compile(r"end \(2026-11-25 08:00 UTC\) must be after start \(2026-11-25 09:00 UTC\)"))
    message.wait_for()
    page.screenshot(path=str(ARTIFACTS / "reprocess-inverted-interval-rejected.png"))
    runs = airflow_ui.api.get("/api/v2/dags/kidjamo_reprocess/dagRuns").json()
    assert runs["total_entries"] == 0, "the rejected trigger must not create a run"


def test_vitals_triggered_for_a_landed_minute_succeeds(page, airflow_ui, started_runs):
    run_id = started_runs["manual_run_id"]
    state = _wait_until(lambda: _run_state(airflow_ui.api, run_id) in ("success", "failed") and _run_state(airflow_ui.api, run_id),
                        f"kidjamo_vitals run {run_id}", 480, interval_s=5)
    page.goto(f"{airflow_ui.base_url}/dags/kidjamo_vitals/runs/{run_id}")
    page.get_by_text(run_id, exact=True).first.wait_for()
    page.get_by_text("Success", exact=True).first.wait_for()
    page.get_by_role("button", name=re.compile("Show Graph")).click()
    page.get_by_text("to_raw").first.wait_for()
    time.sleep(2)  # let the graph finish its layout before the screenshot
    page.screenshot(path=str(ARTIFACTS / "vitals-run-graph.png"))
    assert state == "success"

    # The readings landed in that minute reach the warehouse: through this run, or through a
    # scheduled run that drained them from landing first (landing is a drained backlog).
    def loaded() -> int:
        with psycopg.connect(airflow_ui.database_url) as connection:
            return connection.execute(
                "SELECT count(*) FROM kidjamo.measurements WHERE measured_at >= %s AND measured_at < %s",
                (airflow_ui.first_minute - timedelta(minutes=1), airflow_ui.first_minute)).fetchone()[0]

    assert _wait_until(lambda: loaded() == airflow_ui.readings_per_minute, "the landed minute's readings in the warehouse", 240)


def test_three_minute_backfill_completes(page, airflow_ui, started_runs):
    api = airflow_ui.api
    backfill_id = started_runs["backfill_id"]
    _wait_until(lambda: api.get(f"/api/v2/backfills/{backfill_id}").json()["completed_at"],
                f"backfill {backfill_id} to complete", 600, interval_s=5)
    runs = api.get("/api/v2/dags/kidjamo_vitals/dagRuns", params={"run_type": "backfill", "limit": 10}).json()["dag_runs"]
    assert sorted(run["data_interval_start"][:16] for run in runs) == [
        (started_runs["backfill_from"] + timedelta(minutes=offset)).strftime("%Y-%m-%dT%H:%M") for offset in range(3)]
    assert {run["state"] for run in runs} == {"success"}

    page.goto(f"{airflow_ui.base_url}/dags/kidjamo_vitals")
    page.get_by_role("button", name=re.compile("Show Grid")).click()
    page.get_by_text("raw", exact=True).first.wait_for()
    time.sleep(2)
    page.screenshot(path=str(ARTIFACTS / "vitals-dag-grid.png"))
