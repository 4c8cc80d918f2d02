"""The care-team app over real HTTP, as the clinicians of two care teams, on a warehouse fed by the real pipeline.

Row-level security decides what each clinician sees; actions call ``transforms.alerts``' functions
as the clinician; every refusal changes nothing and leaves an audit row.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.care.conftest import PASSWORD, csrf_of, log_in


@pytest.fixture(scope="module")
def hypoxic_alert(ward) -> int:
    """The critical alert of team A's first patient, raised by a hypoxia minute through the pipeline."""
    ward.run_minute(hypoxia=True)
    rows = ward.query("SELECT alert_id FROM kidjamo.alerts WHERE patient_id = %s AND severity = 'critical'"
                      " AND status = 'open' ORDER BY alert_id", (ward.fleet.patient_ids[0],))
    assert rows, "the hypoxia minute raised no critical alert"
    return rows[0][0]


def audit_rows(ward, action: str) -> list[dict]:
    return [row[0] for row in ward.query(
        "SELECT jsonb_build_object('acting_role', acting_role, 'detail', detail, 'patient_id', patient_id)"
        " FROM kidjamo.audit_log WHERE action = %s ORDER BY audit_id", (action,))]


def alert_state(ward, alert_id: int) -> tuple:
    return ward.query("SELECT status, acknowledged_by, resolved_by, updated_at FROM kidjamo.alerts WHERE alert_id = %s",
                      (alert_id,))[0] + (ward.query("SELECT count(*) FROM kidjamo.alert_events WHERE alert_id = %s",
                                                    (alert_id,))[0][0],)


def test_the_board_lists_only_the_clinicians_team_with_the_alerting_patient_first(ward, care_app, hypoxic_alert):
    alice = log_in(care_app.base_url, "care_alice")
    page = alice.get("/board", headers={"Accept-Language": "en"}).text
    listed = re.findall(r'data-patient="([^"]+)"', page)
    assert listed[0] == ward.fleet.patient_ids[0]
    assert set(listed) == set(ward.team_a)
    assert "⛔ Critical" in page


def test_a_clinician_of_another_team_sees_neither_the_patient_nor_the_alert(ward, care_app, hypoxic_alert):
    bob = log_in(care_app.base_url, "care_bob")
    board = bob.get("/board").text
    assert set(re.findall(r'data-patient="([^"]+)"', board)) == set(ward.team_b)
    assert ward.fleet.patient_ids[0] not in board
    assert f"alert-{hypoxic_alert}" not in bob.get("/alerts").text
    before = len(audit_rows(ward, "care_access_refused"))
    page = bob.get(f"/patients/{ward.fleet.patient_ids[0]}")
    assert page.status_code == 404
    assert ward.fleet.patient_ids[0] not in page.text.split("<main", 1)[1].replace(f"/patients/{ward.fleet.patient_ids[0]}", "")
    denied = audit_rows(ward, "care_access_refused")[before:]
    assert denied and denied[-1]["acting_role"] == "care_bob"
