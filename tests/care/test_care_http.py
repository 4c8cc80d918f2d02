"""The care-team app over real HTTP, as the clinicians of two care teams, on a warehouse fed by the real pipeline.

Row-level security decides what each clinician sees; actions call ``transforms.alerts``' functions
as the clinician; every refusal changes nothing and leaves an audit row.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from markupsafe import escape

from care.app import create_app
from care.i18n import RULE_TITLE, Translator, catalogue
from tests.care.conftest import PASSWORD, Served, csrf_of, free_port, log_in

pytestmark = pytest.mark.slow  # a uvicorn server and the pipeline


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
    assert "‼ Critical" in page


def test_a_french_page_shows_the_alert_title_and_its_qualifiers_in_french(ward, care_app, hypoxic_alert):
    """(Before the tests that acknowledge and resolve the alert: the queue shows it while it is open.)"""
    (english, qualifiers), = ward.query("SELECT evidence -> 'rule' ->> 'title', evidence -> 'qualifiers' FROM kidjamo.alerts"
                                        " WHERE alert_id = %s", (hypoxic_alert,))
    french = catalogue("fr")[(RULE_TITLE, english)]
    alice = log_in(care_app.base_url, "care_alice")
    queue = alice.get("/alerts", headers={"Accept-Language": "fr-CM,fr;q=0.9,en;q=0.5"}).text
    article = queue.split(f'id="alert-{hypoxic_alert}"', 1)[1].split("</article>", 1)[0]
    assert str(escape(french)) in article and str(escape(english)) not in article
    for qualifier in qualifiers or []:
        assert str(escape(Translator("fr").qualifier(qualifier))) in article
    assert str(escape(french)) in alice.get("/board", headers={"Accept-Language": "fr"}).text
    english_queue = alice.get("/alerts", headers={"Accept-Language": "en"}).text
    assert str(escape(english)) in english_queue.split(f'id="alert-{hypoxic_alert}"', 1)[1].split("</article>", 1)[0]


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


def test_a_patient_page_of_the_team_shows_charts_thresholds_and_quarantine(ward, care_app, hypoxic_alert):
    alice = log_in(care_app.base_url, "care_alice")
    for window in ("6h", "24h", "7d"):
        page = alice.get(f"/patients/{ward.fleet.patient_ids[0]}", params={"window": window},
                         headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert page.status_code == 200
        spec = page.text.split('id="chart-spec">', 1)[1].split("</script>", 1)[0]
        assert '"vconcat"' in spec and "hypoxia" in spec  # the thresholds and the alert marker are drawn
    assert "threshold hypoxia: 94%" in page.text
    assert "data-quarantine" in page.text


def test_an_unknown_patient_or_alert_is_refused_plainly_and_audited(ward, care_app):
    alice = log_in(care_app.base_url, "care_alice")
    before = len(audit_rows(ward, "care_access_refused"))
    assert alice.get("/patients/patient-does-not-exist").status_code == 404
    board = alice.get("/board").text
    response = alice.post("/alerts/99999999/acknowledge", data={"csrf_token": csrf_of(board)})
    assert response.status_code == 404
    assert "No such patient or alert in your care teams" in alice.get(
        "/patients/nobody", headers={"Accept-Language": "en"}).text
    assert len(audit_rows(ward, "care_access_refused")) == before + 3


def test_acknowledging_in_the_page_uses_the_cli_path_and_a_second_acknowledgement_is_refused(ward, care_app, hypoxic_alert):
    alice = log_in(care_app.base_url, "care_alice")
    queue = alice.get("/alerts").text
    assert f'id="alert-{hypoxic_alert}"' in queue
    form = {"csrf_token": csrf_of(queue), "status": "open"}
    done = alice.post(f"/alerts/{hypoxic_alert}/acknowledge", data=form)
    assert done.status_code == 303
    status, acknowledged_by, _, _, _ = alert_state(ward, hypoxic_alert)
    assert (status, acknowledged_by) == ("acknowledged", "care_alice")
    events = ward.query("SELECT event_type, actor FROM kidjamo.alert_events WHERE alert_id = %s ORDER BY event_id",
                        (hypoxic_alert,))
    assert events[-1] == ("acknowledged", "care_alice")
    audited = ward.query("SELECT acting_role FROM kidjamo.audit_log WHERE table_name = 'kidjamo.alerts' AND action = 'UPDATE'"
                         " AND row_key ->> 'alert_id' = %s ORDER BY audit_id DESC LIMIT 1", (str(hypoxic_alert),))
    assert audited == [("care_alice",)]

    state = alert_state(ward, hypoxic_alert)
    before = len(audit_rows(ward, "care_action_refused"))
    replay = alice.post(f"/alerts/{hypoxic_alert}/acknowledge", data=form)  # the same form again
    assert replay.status_code == 409
    second = alice.post(f"/alerts/{hypoxic_alert}/acknowledge", data={"csrf_token": form["csrf_token"]})
    assert second.status_code == 409 and "already acknowledged" in second.text
    assert alert_state(ward, hypoxic_alert) == state
    assert len(audit_rows(ward, "care_action_refused")) == before + 2


def test_a_forged_form_or_another_teams_clinician_changes_nothing(ward, care_app, hypoxic_alert):
    alice, bob = log_in(care_app.base_url, "care_alice"), log_in(care_app.base_url, "care_bob")
    state = alert_state(ward, hypoxic_alert)
    forged = alice.post(f"/alerts/{hypoxic_alert}/resolve", data={"csrf_token": "forged", "note": "x"})
    assert forged.status_code == 403
    no_token = alice.post(f"/alerts/{hypoxic_alert}/escalate", data={})
    assert no_token.status_code == 403
    no_reason = alice.post(f"/alerts/{hypoxic_alert}/resolve", data={"csrf_token": csrf_of(alice.get("/board").text)})
    assert no_reason.status_code == 400
    other_team = bob.post(f"/alerts/{hypoxic_alert}/resolve",
                          data={"csrf_token": csrf_of(bob.get("/board").text), "note": "not mine"})
    assert other_team.status_code == 404
    assert alert_state(ward, hypoxic_alert) == state
    assert [row["acting_role"] for row in audit_rows(ward, "care_form_refused")][-2:] == ["care_alice", "care_alice"]
    assert audit_rows(ward, "care_access_refused")[-1]["acting_role"] == "care_bob"


def test_escalating_sends_the_next_tier_once_then_refuses(ward, care_app):
    alert_id = ward.query("SELECT alert_id FROM kidjamo.alerts WHERE patient_id = ANY(%s) AND status <> 'resolved'"
                          " ORDER BY alert_id DESC LIMIT 1", (ward.team_a,))[0][0]
    alice = log_in(care_app.base_url, "care_alice")
    token = csrf_of(alice.get("/board").text)
    sent = ward.query("SELECT count(*) FROM kidjamo.alert_events WHERE alert_id = %s AND event_type = 'escalation_notice'",
                      (alert_id,))[0][0]
    for _ in range(2 - sent):
        assert alice.post(f"/alerts/{alert_id}/escalate", data={"csrf_token": token, "note": "to the registrar"}).status_code == 303
    audiences = ward.query("SELECT e.audience, e.actor, count(n.notification_id) FROM kidjamo.alert_events AS e"
                           " LEFT JOIN kidjamo.notifications AS n USING (event_id)"
                           " WHERE e.alert_id = %s AND e.event_type = 'escalation_notice' GROUP BY 1, 2 ORDER BY 1",
                           (alert_id,))
    assert [a for a, _, _ in audiences] == ["escalation", "second_tier"]
    assert all(queued >= 1 for _, _, queued in audiences)
    refused = alice.post(f"/alerts/{alert_id}/escalate", data={"csrf_token": token})
    assert refused.status_code == 409 and "second tier" in refused.text


def test_resolving_needs_the_session_and_records_the_reason(ward, care_app):
    alert_id = ward.query("SELECT alert_id FROM kidjamo.alerts WHERE patient_id = ANY(%s) AND status <> 'resolved'"
                          " ORDER BY alert_id LIMIT 1", (ward.team_a,))[0][0]
    anonymous = httpx.post(f"{care_app.base_url}/alerts/{alert_id}/resolve", data={"note": "x"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    alice = log_in(care_app.base_url, "care_alice")
    response = alice.post(f"/alerts/{alert_id}/resolve",
                          data={"csrf_token": csrf_of(alice.get("/board").text), "note": "sensor was off the finger"})
    assert response.status_code == 303
    assert ward.query("SELECT status, resolved_by, resolution FROM kidjamo.alerts WHERE alert_id = %s", (alert_id,)) == [
        ("resolved", "care_alice", "sensor was off the finger")]


def test_logging_out_ends_the_session_for_a_copied_cookie(care_app):
    alice = log_in(care_app.base_url, "care_alice")
    stolen = dict(alice.cookies)
    assert alice.post("/logout", data={"csrf_token": csrf_of(alice.get("/board").text)}).status_code == 303
    replayed = httpx.get(f"{care_app.base_url}/board", cookies=stolen, follow_redirects=False)
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"


def test_session_cookies_are_httponly_and_samesite_and_secure_when_configured(ward, care_app):
    client = httpx.Client(base_url=care_app.base_url)
    token = client.get("/login").cookies["kidjamo_care_login"]
    response = client.post("/login", data={"login": "care_alice", "password": PASSWORD, "csrf_token": token})
    cookie = next(value for name, value in response.headers.multi_items()
                  if name == "set-cookie" and value.startswith("kidjamo_care_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # this server runs with KIDJAMO_CARE_COOKIE_SECURE=false (loopback http)
    from care.app import create_app
    from fastapi.testclient import TestClient

    secure = TestClient(create_app(ward.app_url, ward.settings.model_copy(update={"care_cookie_secure": True})),
                        base_url="https://care.example")
    assert "Secure" in secure.get("/login").headers["set-cookie"]


def test_login_attempts_are_rate_limited_per_login_even_with_the_right_password(ward, care_app):
    client = httpx.Client(base_url=care_app.base_url)
    token = client.get("/login").cookies["kidjamo_care_login"]
    for _ in range(ward.settings.care_login_max_failures):
        assert client.post("/login", data={"login": "care_bob", "password": "wrong", "csrf_token": token}).status_code == 401
    blocked = client.post("/login", data={"login": "care_bob", "password": PASSWORD, "csrf_token": token},
                          headers={"Accept-Language": "en"})
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.text
    assert any(row["detail"]["reason"] == "too_many_attempts" for row in audit_rows(ward, "care_login_refused"))
    ward.query("DELETE FROM kidjamo.care_login_attempts WHERE login = 'care_bob' RETURNING 1")


def test_a_login_form_without_its_token_is_refused(care_app):
    response = httpx.post(f"{care_app.base_url}/login", data={"login": "care_alice", "password": PASSWORD})
    assert response.status_code == 403


def test_french_by_default_and_english_by_the_browser_or_the_switch(care_app):
    alice = log_in(care_app.base_url, "care_alice")
    assert "Tableau du service" in alice.get("/board").text
    assert "Ward board" in alice.get("/board", headers={"Accept-Language": "en-US,en;q=0.8,fr;q=0.5"}).text
    switched = alice.get("/language/en", params={"back": "/alerts"})
    assert switched.status_code == 303 and switched.headers["location"] == "/alerts"
    assert "Alert queue" in alice.get("/alerts", headers={"Accept-Language": "fr"}).text


def test_the_pages_show_times_in_the_care_teams_zone(ward, hypoxic_alert):
    settings = ward.settings.model_copy(update={"care_timezone": "Africa/Douala"})
    served = Served(create_app(ward.app_url, settings), free_port()).start()
    try:
        alice = log_in(served.base_url, "care_alice")
        english = {"Accept-Language": "en"}
        page = alice.get(f"/patients/{ward.fleet.patient_ids[0]}", params={"window": "6h"}, headers=english).text
        assert 'data-zone="Africa/Douala"' in page and "Times in Africa/Douala (UTC+01:00)." in page
        spec = json.loads(page.split('id="chart-spec">', 1)[1].split("</script>", 1)[0])
        assert spec["vconcat"][0]["layer"][1]["encoding"]["x"]["title"] == "Time (Africa/Douala)"
        (opened_at,), = ward.query("SELECT opened_at FROM kidjamo.alerts WHERE alert_id = %s", (hypoxic_alert,))
        shown = Translator("en", "Africa/Douala").datetime(opened_at)
        assert shown.endswith(" WAT") and str(escape(shown)) in alice.get("/alerts", headers=english).text
        assert Translator("en").datetime(opened_at) != shown  # not the UTC time
    finally:
        served.stop()
