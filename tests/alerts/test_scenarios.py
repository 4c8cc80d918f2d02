"""Scenarios through the whole pipeline (transforms.pipeline.process_interval): each raises its alert, once.

A fleet of simulated patients (ingestion/simulator/) posts a reading every 30 s; each minute's
readings land in the lake and one pipeline run processes that arrival minute, as the
``kidjamo_vitals`` DAG does. Notifications go to a real local webhook receiver.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg.rows import dict_row

from ingestion.simulator.fleet import Fleet, Scenario
from ingestion.simulator.payloads import write_landing
from kidjamo.settings import Settings
from tests.alerts.servers import WebhookReceiver
from transforms.alerts.delivery import deliver_notifications
from transforms.pipeline import process_interval
from transforms.registry import import_registry

START = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
REFERENCE_DATE = date(2026, 11, 27)


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def settings(tmp_path, webhook, monkeypatch):
    """Notification settings, in the environment too: the pipeline's steps read get_settings()."""
    values = {"NOTIFY_CHANNELS": "webhook,log", "WEBHOOK_URL": webhook.url, "WEBHOOK_SECRET": "k",
              "NOTIFY_MIN_SEVERITY": "high"}
    for name, value in values.items():
        monkeypatch.setenv(f"KIDJAMO_{name}", value)
    return Settings(home=tmp_path, notify_channels="webhook,log", webhook_url=webhook.url, webhook_secret="k",
                    notify_min_severity="high")


def fleet_of(size: int, url: str, tmp_path, seed: int = 11) -> Fleet:
    fleet = Fleet.generate(size, seed=seed, reference_date=REFERENCE_DATE)
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), url, pseudonym_key="test-key")
    return fleet


def patient_of_age(fleet: Fleet, low_years: float, high_years: float) -> str:
    return next(p for p, days in zip(fleet.patient_ids, fleet.age_days) if low_years <= days / 365.25 < high_years)


def run_minutes(fleet, url, lake, settings, minutes, *, scenarios=(), run_prefix="run", start=START):
    """Land and process ``minutes`` arrival minutes one by one, as the every-minute DAG does.

    The readings are generated in one go (so an episode is continuous across minutes) and each
    lands in the minute after it was measured.
    """
    readings = fleet.readings(start - timedelta(minutes=1), start + timedelta(minutes=minutes - 1), scenarios=scenarios)
    by_arrival: dict[datetime, list[dict]] = {}
    for reading in readings:
        measured = datetime.fromisoformat(reading["timestamp"].replace("Z", "+00:00"))
        by_arrival.setdefault(measured.replace(second=0) + timedelta(minutes=1), []).append(reading)
    results = []
    for offset in range(minutes):
        arrival = start + timedelta(minutes=offset)
        if by_arrival.get(arrival):
            write_landing(lake, arrival, by_arrival[arrival], name=f"minute-{offset}")
        results.append(process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url,
                                        run_id=f"{run_prefix}-{offset}", settings=settings))
    return results


def alerts_of(url: str, patient_id: str) -> dict[str, dict]:
    with psycopg.connect(url, row_factory=dict_row) as connection:
        rows = connection.execute("SELECT * FROM kidjamo.alerts WHERE patient_id = %s ORDER BY alert_id",
                                  (patient_id,)).fetchall()
    return {row["rule_id"]: row for row in rows}


def all_alerts(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as connection:
        return connection.execute("SELECT * FROM kidjamo.alerts ORDER BY alert_id").fetchall()


MINUTES = 12


def test_clinical_scenarios_each_raise_their_alert_once_and_backfill_sends_nothing_twice(
        fresh_database_url, lake, settings, tmp_path, webhook):
    url = fresh_database_url
    fleet = fleet_of(12, url, tmp_path)
    ages = {p: days / 365.25 for p, days in zip(fleet.patient_ids, fleet.age_days)}
    children = [p for p, age in ages.items() if 1 <= age < 12]
    adults = [p for p, age in ages.items() if age >= 18]
    assert len(children) >= 3 and len(adults) >= 2, ages
    febrile_child, pain_patient, heat_patient = children[:3]
    acs_adult, flat_patient = adults[:2]
    silent_patient = next(p for p in fleet.patient_ids if p not in {febrile_child, pain_patient, heat_patient,
                                                                      acs_adult, flat_patient})
    window = (START - timedelta(minutes=1), START + timedelta(minutes=MINUTES))
    scenarios = [
        Scenario("fever", febrile_child, *window),
        Scenario("acs", acs_adult, *window),
        Scenario("pain_crisis", pain_patient, *window),
        Scenario("fever", pain_patient, *window),
        Scenario("heat_dehydration", heat_patient, *window),
        Scenario("flatline", flat_patient, *window),
        Scenario("dropout", silent_patient, START + timedelta(minutes=2), window[1]),
    ]
    run_minutes(fleet, url, lake, settings, MINUTES, scenarios=scenarios)
    expected = {
        febrile_child: ("fever", "critical"),
        acs_adult: ("acs_pattern", "critical"),
        pain_patient: ("voc_pattern", "critical"),
        heat_patient: ("heat_dehydration", "high"),
        flat_patient: ("sensor_flatline", "warning"),
        silent_patient: ("sensor_silent", "warning"),
    }
    for patient_id, (rule_id, severity) in expected.items():
        alerts = alerts_of(url, patient_id)
        assert rule_id in alerts, (patient_id, rule_id, sorted(alerts))
        assert alerts[rule_id]["severity"] == severity, (patient_id, rule_id)
        assert alerts[rule_id]["status"] == "open"
    assert alerts_of(url, pain_patient)["pain_severe"]["severity"] == "high"
    bystanders = set(fleet.patient_ids) - set(expected)
    assert [a for a in all_alerts(url) if a["patient_id"] in bystanders and a["severity"] == "critical"] == []

    def posted() -> list[tuple]:
        return sorted((r["json"]["patient_id"], r["json"]["rule_id"], r["json"]["event_type"], r["json"]["severity"])
                      for r in webhook.requests)

    paged = posted()
    assert len(paged) == len(set(paged))  # one notification per alert event
    for patient_id, (rule_id, severity) in expected.items():
        if severity in ("high", "critical"):
            assert (patient_id, rule_id, "opened", severity) in paged or (patient_id, rule_id, "escalated", severity) in paged
    alerts_before = [(a["alert_id"], a["rule_id"], a["severity"], a["status"], a["reading_count"]) for a in all_alerts(url)]

    # Re-run one minute (an Airflow task retry) and backfill the whole window in one wide run.
    last = START + timedelta(minutes=MINUTES - 1)
    process_interval(last, last + timedelta(minutes=1), lake=lake, database_url=url, run_id="retry", settings=settings)
    process_interval(START, START + timedelta(minutes=MINUTES), lake=lake, database_url=url, run_id="backfill",
                     settings=settings)
    deliver_notifications(url, now=START + timedelta(hours=1), settings=settings)
    assert posted() == paged
    assert [(a["alert_id"], a["rule_id"], a["severity"], a["status"], a["reading_count"]) for a in all_alerts(url)] \
        == alerts_before
