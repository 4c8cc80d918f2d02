"""The metrics exporter reports what a real pipeline run left in the warehouse and the lake."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.landing import landing_backlog
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from kidjamo.ops.exporter import ExporterConfig, registry_for, serve
from kidjamo.warehouse.embedded_pg import free_port
from transforms.pipeline import process_interval
from transforms.registry import import_registry

PATIENTS = 6
ESCALATION = {"escalation": 300.0, "second_tier": 900.0}


def _samples(config: ExporterConfig, now: datetime) -> dict[tuple, float]:
    """{(metric name, sorted label pairs): value} of one scrape at ``now``."""
    text = generate_latest(registry_for(config, clock=lambda: now)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module", params=[1, 3], ids=["one-shard", "three-shards"])
def processed_minute(postgres_server, tmp_path_factory, request):
    """One minute of a fleet (a hypoxic patient, one unparseable line) through every pipeline step,
    in one shard or in three (each step's counts then summed over its shards' rows)."""
    from tests.databases import migrated_database

    folder = tmp_path_factory.mktemp("exporter")
    lake = Lake(f"file://{folder / 'lake'}")
    arrival = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)
    fleet = Fleet.generate(PATIENTS, seed=3)
    with migrated_database(postgres_server, f"exporter_minute_{request.param}") as url:
        import_registry(fleet.write_registry_csv(folder / "registry.csv"), url, pseudonym_key="test-key")
        readings = fleet.readings(arrival - timedelta(minutes=1), arrival, hypoxia_patient=True)
        write_landing(lake, arrival, readings, name="sensors")
        lake.write_bytes(f"landing/vitals/{minute_partition(arrival)}/broken.ndjson", b"{not json\n")
        process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url, run_id="exporter-test",
                         shards=request.param)
        yield ExporterConfig(url, lake, ESCALATION), arrival, len(readings)


def test_exporter_reports_freshness_layers_quarantine_gates_and_alerts(processed_minute):
    config, arrival, readings = processed_minute
    end = arrival + timedelta(minutes=1)
    samples = _samples(config, end + timedelta(seconds=30))

    assert samples[("kidjamo_exporter_database_up", ())] == 1
    assert samples[("kidjamo_pipeline_freshness_seconds", (("stage", "gold"),))] == pytest.approx(30)
    assert samples[("kidjamo_pipeline_newest_minute_timestamp_seconds", (("stage", "gold"),))] == arrival.timestamp()
    assert samples[("kidjamo_pipeline_freshness_seconds", (("stage", "alerts"),))] == pytest.approx(30)
    layer = {name: samples[("kidjamo_pipeline_minute_readings", (("layer", name),))]
             for name in ("raw", "bronze", "silver", "gold", "warehouse")}
    assert layer["raw"] == readings + 1 and layer["bronze"] == layer["silver"] == layer["warehouse"] == readings
    assert layer["gold"] >= PATIENTS
    assert samples[("kidjamo_pipeline_minute_quarantined", (("reason", "invalid_json"),))] == 1
    assert samples[("kidjamo_pipeline_quarantine_share", ())] == pytest.approx(1 / (readings + 1))
    assert {suite: value for (name, labels), value in samples.items()
            if name == "kidjamo_gate_last_success" for _, suite in labels} == {"bronze": 1, "silver": 1}
    assert samples[("kidjamo_alerts_open", (("severity", "critical"), ("status", "open")))] >= 1
    assert samples[("kidjamo_alerts_oldest_unacknowledged_critical_seconds", ())] > 0
    assert samples[("kidjamo_alerts_escalation_after_seconds", (("tier", "second_tier"),))] == 900
    assert samples[("kidjamo_pipeline_step_failures", (("step", "load"),))] == 0
    assert samples[("kidjamo_views_refresh_seconds", (("view", "data_quality_daily"),))] > 0
    assert samples[("kidjamo_landing_backlog_files", ())] == 0
    assert samples[("kidjamo_lake_disk_size_bytes", ())] > samples[("kidjamo_lake_disk_free_bytes", ())] > 0


def test_freshness_grows_while_no_minute_is_processed(processed_minute):
    config, arrival, _ = processed_minute
    later = arrival + timedelta(minutes=6)
    assert _samples(config, later)[("kidjamo_pipeline_freshness_seconds", (("stage", "gold"),))] == 300


def test_landing_backlog_counts_waiting_files_and_the_oldest_minute_but_not_files_in_progress(lake: Lake):
    now = datetime(2026, 11, 27, 15, 40, 20, tzinfo=timezone.utc)
    for minute, name in ((15, "a.ndjson"), (15, "b.ndjson"), (38, "c.ndjson"), (39, "_ingest-part.ndjson")):
        lake.write_bytes(f"landing/vitals/dt=2026-11-27/hh=15/mm={minute:02d}/{name}", b"{}\n")
    backlog = landing_backlog(lake, now)
    assert (backlog.files, backlog.minutes, backlog.bytes) == (3, 2, 9)
    assert backlog.oldest_minute == datetime(2026, 11, 27, 15, 15, tzinfo=timezone.utc)
    assert backlog.oldest_age_s == 24 * 60 + 20  # since 15:15 ended
    assert backlog.unpublished_parts == 1


def test_an_unreachable_warehouse_is_reported_not_raised(postgres_server, lake: Lake):
    config = ExporterConfig(postgres_server.url("no_such_database"), lake, ESCALATION)
    samples = _samples(config, datetime.now(timezone.utc))
    assert samples[("kidjamo_exporter_database_up", ())] == 0
    assert samples[("kidjamo_exporter_lake_up", ())] == 1
    assert not any(name.startswith("kidjamo_pipeline_") for name, _ in samples)


def test_the_exporter_role_cannot_read_patient_data(migrated_url: str):
    with psycopg.connect(migrated_url) as connection:
        connection.execute("SET ROLE kidjamo_monitor")
        connection.execute("SELECT count(*), min(severity_since) FROM kidjamo.alerts")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("SELECT patient_id FROM kidjamo.alerts")
    with psycopg.connect(migrated_url) as connection:
        connection.execute("SET ROLE kidjamo_monitor")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("SELECT original_text FROM kidjamo.quarantine")


def test_metrics_are_served_over_http(migrated_url: str, lake: Lake):
    port, stop = free_port(), threading.Event()
    server = threading.Thread(target=serve, args=(ExporterConfig(migrated_url, lake, ESCALATION), "127.0.0.1", port, stop))
    server.start()
    try:
        for _ in range(50):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                break
            except httpx.ConnectError:
                threading.Event().wait(0.1)
        assert response.status_code == 200
        assert "kidjamo_exporter_database_up 1.0" in response.text
        assert "# TYPE kidjamo_pipeline_freshness_seconds gauge" in response.text
    finally:
        stop.set()
        server.join(timeout=10)


def test_the_exporter_reconnects_after_the_warehouse_drops_its_connection(migrated_url: str, lake: Lake):
    config = ExporterConfig(migrated_url, lake, ESCALATION)
    registry = registry_for(config)
    up = ("kidjamo_exporter_database_up", ())

    def scrape() -> float:
        text = generate_latest(registry).decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}[up]

    assert scrape() == 1
    with psycopg.connect(migrated_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kidjamo-exporter'")
    assert scrape() == 0  # the scrape that found the connection gone says so
    assert scrape() == 1  # and the next one has reconnected
