"""`kidjamo alerts list|show|ack|resolve` against a real database."""

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from kidjamo.cli import main
from tests.alerts.conftest import alerts, query
from tests.clinical.readings import T0, frame, reading
from transforms.alerts.escalation import escalate
from transforms.alerts.store import raise_alerts
from transforms.clinical.rules import default_rules

RULES = default_rules()


@pytest.fixture
def cli(alerts_db, log_settings, monkeypatch):
    monkeypatch.setenv("KIDJAMO_DATABASE_URL", alerts_db)
    rows = [reading(patient_id="p1", device_id="d1", temperature=39.0),
            reading(patient_id="p2", device_id="d2", age=8.0, battery_level=10.0)]
    raise_alerts(alerts_db, frame(rows), interval_start=T0, interval_end=T0 + timedelta(minutes=1), run_id="r",
                 settings=log_settings, rules=RULES)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def test_list_shows_active_alerts_most_severe_first(cli):
    result = cli("alerts", "list", "--json")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["rule_id"], r["severity"]) for r in rows] == [("fever", "critical"), ("sensor_battery", "info")]
    assert "fever" in cli("alerts", "list", "--severity", "high").output
    assert "sensor_battery" not in cli("alerts", "list", "--severity", "high").output


def test_ack_records_who_and_when_and_stops_escalation(cli, alerts_db, log_settings):
    fever = next(a for a in alerts(alerts_db) if a["rule_id"] == "fever")
    result = cli("alerts", "ack", str(fever["alert_id"]), "--by", "dr.ada")
    assert result.exit_code == 0 and "acknowledged by dr.ada" in result.output
    (row,) = [a for a in alerts(alerts_db) if a["rule_id"] == "fever"]
    assert row["status"] == "acknowledged" and row["acknowledged_by"] == "dr.ada" and row["acknowledged_at"]
    assert escalate(alerts_db, as_of=T0 + timedelta(minutes=30), settings=log_settings, rules=RULES)["escalation"] == 0
    assert cli("alerts", "ack", str(fever["alert_id"])).exit_code == 1  # already acknowledged


def test_resolve_closes_the_alert_with_who_and_why(cli, alerts_db):
    alert_id = alerts(alerts_db)[0]["alert_id"]
    assert cli("alerts", "resolve", str(alert_id), "--by", "oncall", "--note", "sensor swapped").exit_code == 0
    (row,) = [a for a in alerts(alerts_db) if a["alert_id"] == alert_id]
    assert (row["status"], row["resolved_by"], row["resolution"]) == ("resolved", "oncall", "sensor swapped")
    assert "resolved" in cli("alerts", "list", "--status", "resolved").output
    events = query(alerts_db, "SELECT event_type, actor FROM kidjamo.alert_events WHERE alert_id = %s ORDER BY event_id",
                   (alert_id,))
    assert events[-1] == {"event_type": "resolved", "actor": "oncall"}


def test_show_prints_evidence_lineage_and_events(cli, alerts_db):
    alert_id = alerts(alerts_db)[0]["alert_id"]
    details = json.loads(cli("alerts", "show", str(alert_id)).output)
    assert details["evidence"]["values"] == {"temperature": 39.0}
    assert details["readings"][0]["raw_file"] == "raw/vitals/f.json"
    assert details["events"][0]["event_type"] == "opened"


def test_unknown_alert_is_a_clear_error(cli):
    result = CliRunner().invoke(main, ["alerts", "show", "999999"])
    assert result.exit_code == 1 and "no alert 999999" in result.output
