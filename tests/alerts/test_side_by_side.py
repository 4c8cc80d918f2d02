"""In-process runs do what kidjamo_vitals does once silver is checked: the load (then the views) and
the alert step side by side. A failing load does not hold back the alerts of its minute, and the
run still fails, naming the load's error (as the DAG run would)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

import transforms.load
from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from transforms.pipeline import process_interval
from transforms.registry import import_registry

BCSH_HYPOXIA_SPO2 = 94.0  # BCSH 2015: SpO2 <= 94 % on air
ARRIVAL = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def _land_a_hypoxic_minute(lake, url, tmp_path) -> str:
    fleet = Fleet.generate(10, seed=5, reference_date=date(2026, 11, 27))
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), url, pseudonym_key="k")
    readings = fleet.readings(ARRIVAL - timedelta(minutes=1), ARRIVAL)
    readings[0]["vitals"]["spo2"] = BCSH_HYPOXIA_SPO2 - 1
    write_landing(lake, ARRIVAL, readings, name="minute")
    return readings[0]["patient_id"]


def _steps(url) -> dict:
    with psycopg.connect(url) as connection:
        return dict(connection.execute("SELECT step, status FROM kidjamo.pipeline_runs WHERE run_id = 'side'"))


def test_the_alerts_of_a_minute_are_raised_while_its_load_fails(fresh_database_url, lake, tmp_path, log_settings,
                                                                  monkeypatch):
    hypoxic = _land_a_hypoxic_minute(lake, fresh_database_url, tmp_path)

    def warehouse_refuses(*args, **kwargs):
        raise psycopg.OperationalError("the warehouse refused the load")

    monkeypatch.setattr(transforms.load, "load_measurements", warehouse_refuses)
    with pytest.raises(psycopg.OperationalError, match="refused the load"):
        process_interval(ARRIVAL, ARRIVAL + timedelta(minutes=1), lake=lake, database_url=fresh_database_url,
                         run_id="side", settings=log_settings)

    steps = _steps(fresh_database_url)
    assert steps["load"] == "failed" and steps["alerts"] == "success"
    assert "refresh_views" not in steps  # after the load, in its branch
    with psycopg.connect(fresh_database_url) as connection:
        alerts = connection.execute("SELECT patient_id, rule_id FROM kidjamo.alerts").fetchall()
        loaded = connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0]
    assert (hypoxic, "hypoxia") in alerts
    assert loaded == 0


def test_a_whole_run_reports_every_step_in_order(fresh_database_url, lake, tmp_path, log_settings):
    _land_a_hypoxic_minute(lake, fresh_database_url, tmp_path)
    counts = process_interval(ARRIVAL, ARRIVAL + timedelta(minutes=1), lake=lake, database_url=fresh_database_url,
                              run_id="side", settings=log_settings)
    assert list(counts) == ["to_raw", "to_bronze", "gate_bronze", "to_silver", "gate_silver", "to_gold", "load",
                            "alerts", "refresh_views"]
    assert counts["load"]["measurements"]["inserted"] == counts["to_silver"]["silver_rows"] > 0
    assert set(_steps(fresh_database_url).values()) == {"success"}
