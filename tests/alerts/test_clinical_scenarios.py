"""Three nights that must not go unseen, through the whole pipeline (transforms.pipeline.process_interval).

A small simulated fleet posts a reading every 30 s; each minute's readings land in the lake and one
pipeline run processes that arrival minute, as the ``kidjamo_vitals`` DAG does. Three patients'
readings are rewritten to tell a story:

- a child on opioids for a pain crisis whose breathing slows through the night;
- a febrile child at exactly 38.5 °C (NHLBI 2014: seek care at once at 38.5 °C or more), who
  then cools down;
- a patient whose oxygen saturation is low when the sensor drops out.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg.rows import dict_row

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from kidjamo.lake.storage import Lake
from kidjamo.settings import Settings
from tests.alerts.servers import WebhookReceiver
from tests.databases import migrated_database
from transforms.pipeline import process_interval
from transforms.registry import import_registry

START = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)  # night: 02:00-03:00 local in the fleet's regions
MINUTES = 16
QUIET_MINUTES = 5


def _at(reading: dict) -> datetime:
    return datetime.fromisoformat(reading["timestamp"].replace("Z", "+00:00"))


def _minute(reading: dict) -> float:
    return (_at(reading) - START).total_seconds() / 60


@pytest.fixture(scope="module")
def night(postgres_server, tmp_path_factory):
    """The fleet's night, processed minute by minute; the database, the webhook's requests, the story's patients."""
    home = tmp_path_factory.mktemp("night")
    with WebhookReceiver() as webhook, migrated_database(postgres_server, "t_clinical_night") as url, \
            pytest.MonkeyPatch.context() as env:
        values = {"NOTIFY_CHANNELS": "webhook,log", "WEBHOOK_URL": webhook.url, "WEBHOOK_SECRET": "k",
                  "NOTIFY_MIN_SEVERITY": "high", "ALERT_QUIET_MINUTES": str(QUIET_MINUTES)}
        for name, value in values.items():
            env.setenv(f"KIDJAMO_{name}", value)
        # A key strong enough for any database: this home has no embedded server of its own.
        settings = Settings(home=home, pseudonym_key="clinical-night-" + "k" * 32, notify_channels="webhook,log", webhook_url=webhook.url, webhook_secret="k",
                            notify_min_severity="high", alert_quiet_minutes=QUIET_MINUTES)
        fleet = Fleet.generate(10, seed=23, reference_date=date(2026, 11, 27))
        import_registry(fleet.write_registry_csv(home / "registry.csv"), url, pseudonym_key="test-key")
        ages = {p: days / 365.25 for p, days in zip(fleet.patient_ids, fleet.age_days)}
        school_age = [p for p, age in ages.items() if 4.5 <= age < 11.5]
        assert len(school_age) >= 2, ages
        opioid_child, febrile_child = school_age[:2]
        dropout = next(p for p in fleet.patient_ids if p not in (opioid_child, febrile_child))

        readings = fleet.readings(START - timedelta(minutes=1), START + timedelta(minutes=MINUTES - 1))
        story = []
        for reading in readings:
            minute, vitals = _minute(reading), reading["vitals"]
            if reading["patient_id"] == opioid_child:
                # Breathing slows as the opioid builds up: normal, then PEWS "<= 19" (4-12 y), then "<= 10".
                vitals["respiratory_rate"] = 22 if minute < 3 else 17 if minute < 9 else 9
            elif reading["patient_id"] == febrile_child:
                vitals["temperature"] = 38.5 if 1 <= minute < 4 else 36.8
            elif reading["patient_id"] == dropout:
                if minute >= 4:
                    continue  # the sensor drops out
                vitals["spo2"] = 92.0
            story.append(reading)
        by_arrival: dict[datetime, list[dict]] = {}
        for reading in story:
            by_arrival.setdefault(_at(reading).replace(second=0) + timedelta(minutes=1), []).append(reading)
        lake = Lake(f"file://{home / 'lake'}")
        for offset in range(MINUTES):
            arrival = START + timedelta(minutes=offset)
            write_landing(lake, arrival, by_arrival.get(arrival, []), name=f"minute-{offset}")
            process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url,
                             run_id=f"night-{offset}", settings=settings)
        yield {"url": url, "webhook": list(webhook.requests), "opioid_child": opioid_child,
               "febrile_child": febrile_child, "dropout": dropout, "fleet": fleet}


def alerts_of(url: str, patient_id: str) -> dict[str, dict]:
    with psycopg.connect(url, row_factory=dict_row) as connection:
        rows = connection.execute("SELECT * FROM kidjamo.alerts WHERE patient_id = %s ORDER BY alert_id",
                                  (patient_id,)).fetchall()
    return {row["rule_id"]: row for row in rows}


def events_of(url: str, alert_id: int) -> list[tuple[str, str]]:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT event_type, severity FROM kidjamo.alert_events WHERE alert_id = %s"
                                  " ORDER BY event_id", (alert_id,)).fetchall()


def paged(night: dict, patient_id: str) -> list[tuple[str, str, str]]:
    return [(r["json"]["rule_id"], r["json"]["event_type"], r["json"]["severity"]) for r in night["webhook"]
            if r["json"]["patient_id"] == patient_id]


def test_a_child_on_opioids_whose_breathing_slows_is_paged_high_then_critical(night):
    slow = alerts_of(night["url"], night["opioid_child"])["bradypnoea"]
    assert (slow["severity"], slow["status"], slow["rule_version"]) == ("critical", "open", "1")
    assert slow["evidence"]["values"]["respiratory_rate"] == 9.0
    assert [event for event in events_of(night["url"], slow["alert_id"]) if event[0] != "escalation_notice"] == \
        [("opened", "high"), ("escalated", "critical")]
    assert ("bradypnoea", "opened", "high") in paged(night, night["opioid_child"])
    assert ("bradypnoea", "escalated", "critical") in paged(night, night["opioid_child"])


def test_a_febrile_child_at_exactly_38_5_gets_the_critical_fever_alert_which_stays_open(night):
    alerts = alerts_of(night["url"], night["febrile_child"])
    fever = alerts["fever"]
    assert (fever["severity"], fever["rule_version"]) == ("critical", "2")
    assert fever["evidence"]["values"] == {"temperature": 38.5}
    assert "fever_onset" not in alerts  # superseded by fever, not the only alert any more
    # The child cooled down for longer than the quiet period: a fever alert in SCD is still open.
    assert fever["status"] == "open" and fever["normal_reading_at"] is None
    assert ("fever", "opened", "critical") in paged(night, night["febrile_child"])


def test_an_alert_whose_sensor_drops_out_stays_open_and_the_silence_is_high(night):
    alerts = alerts_of(night["url"], night["dropout"])
    assert alerts["hypoxia"]["status"] == "open"  # no reading is not a normal reading
    assert alerts["sensor_silent"]["severity"] == "high"  # the patient has an open high alert
    assert ("sensor_silent", "opened", "high") in paged(night, night["dropout"])


def test_nobody_else_is_paged_critical(night):
    story = {night["opioid_child"], night["febrile_child"], night["dropout"]}
    others = [r["json"] for r in night["webhook"] if r["json"]["patient_id"] not in story]
    assert [(d["patient_id"], d["rule_id"]) for d in others if d["severity"] == "critical"] == []
