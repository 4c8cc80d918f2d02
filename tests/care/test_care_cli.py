"""The care team's commands: ``kidjamo clinicians add``, ``kidjamo alerts escalate``, ``make run``'s demo clinician,
and the app's place in the compose file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.care.conftest import log_in

pytestmark = pytest.mark.slow  # a uvicorn server and the pipeline

ROOT = Path(__file__).resolve().parents[2]
KIDJAMO = str(Path(sys.executable).parent / "kidjamo")


def cli(ward, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "KIDJAMO_DATABASE_URL": ward.url, "KIDJAMO_HOME": str(ward.settings.home),
                   "KIDJAMO_PSEUDONYM_KEY": ward.settings.pseudonym_key}
    return subprocess.run([KIDJAMO, *args], env=environment, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def carol(ward):
    yield "care_carol"
    with psycopg.connect(ward.url, autocommit=True) as connection:
        connection.execute("DELETE FROM kidjamo.clinician_credentials WHERE role_name = 'care_carol'")
        connection.execute("DELETE FROM kidjamo.care_team_members WHERE role_name = 'care_carol'")
        connection.execute("DELETE FROM kidjamo.care_sessions WHERE role_name = 'care_carol'")
        connection.execute("DELETE FROM kidjamo.clinician_identities WHERE role_name = 'care_carol'")
        connection.execute(sql.SQL("DROP ROLE IF EXISTS care_carol"))


def test_clinicians_add_provisions_a_login_that_opens_the_board_of_its_team(ward, care_app, carol):
    result = cli(ward, "clinicians", "add", carol, "--team", "team-b", "--password-stdin", stdin="a long passphrase\n")
    assert result.returncode == 0, result.stderr
    (stored,) = ward.query("SELECT password_hash FROM kidjamo.clinician_credentials WHERE role_name = %s", (carol,))[0]
    assert stored.startswith("$argon2id$") and "a long passphrase" not in stored
    assert ward.query("SELECT kidjamo.care_teams_of(%s)", (carol,)) == [("team-b",)]
    board = log_in(care_app.base_url, carol, "a long passphrase").get("/board").text
    assert set(re.findall(r'data-patient="([^"]+)"', board)) == set(ward.team_b)


def test_clinicians_add_maps_a_hospital_identity_without_a_web_password(ward, carol):
    issuer = "https://idp.hopital-laquintinie.cm/realms/staff"
    result = cli(ward, "clinicians", "add", carol, "--team", "team-b", "--no-password", "--oidc-subject", "f3a9-carol",
                 "--oidc-issuer", issuer)
    assert result.returncode == 0, result.stderr
    assert f"hospital login: subject f3a9-carol of {issuer}" in result.stdout
    assert ward.query("SELECT issuer, subject, role_name FROM kidjamo.clinician_identities WHERE role_name = %s",
                      (carol,)) == [(issuer, "f3a9-carol", carol)]
    assert ward.query("SELECT count(*) FROM kidjamo.clinician_credentials WHERE role_name = %s", (carol,)) == [(0,)]
    taken = cli(ward, "clinicians", "add", "care_alice", "--team", "team-a", "--no-password", "--oidc-subject",
                "f3a9-carol", "--oidc-issuer", issuer)
    assert taken.returncode != 0 and "already clinician 'care_carol'" in taken.stderr
    no_way_in = cli(ward, "clinicians", "add", carol, "--team", "team-b", "--no-password")
    assert no_way_in.returncode != 0 and "--no-password needs --oidc-subject" in no_way_in.stderr
    no_issuer = cli(ward, "clinicians", "add", carol, "--team", "team-b", "--no-password", "--oidc-subject", "x")
    assert no_issuer.returncode != 0 and "KIDJAMO_CARE_OIDC_ISSUER" in no_issuer.stderr

def test_clinicians_add_refuses_a_short_password_and_a_reserved_login(ward, carol):
    short = cli(ward, "clinicians", "add", carol, "--team", "team-a", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    reserved = cli(ward, "clinicians", "add", "kidjamo_pipeline", "--team", "team-a", "--password-stdin",
                   stdin="a long passphrase\n")
    assert reserved.returncode != 0 and "not pg_* or kidjamo_*" in reserved.stderr
    assert ward.query("SELECT count(*) FROM kidjamo.clinician_credentials WHERE role_name IN (%s, 'kidjamo_pipeline')",
                      (carol,)) == [(0,)]


def test_alerts_escalate_from_the_cli_sends_the_next_tier(ward):
    ward.run_minute(hypoxia=True)
    (alert_id,) = ward.query("SELECT alert_id FROM kidjamo.alerts WHERE status <> 'resolved' ORDER BY alert_id DESC LIMIT 1")[0]
    already = ward.query("SELECT count(*) FROM kidjamo.alert_events WHERE alert_id = %s AND event_type = 'escalation_notice'",
                         (alert_id,))[0][0]
    result = cli(ward, "alerts", "escalate", str(alert_id), "--by", "dr.house", "--note", "call the registrar")
    if already >= 2:
        assert result.returncode != 0 and "second tier" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    events = ward.query("SELECT audience, actor, details ->> 'note' FROM kidjamo.alert_events WHERE alert_id = %s"
                        " AND event_type = 'escalation_notice' ORDER BY event_id DESC LIMIT 1", (alert_id,))
    assert events[0][1:] == ("dr.house", "call the registrar")


def test_the_compose_care_service_never_gets_the_owners_url():
    compose = yaml.safe_load((ROOT / "docker-compose.airflow.yml").read_text())
    care = compose["services"]["care"]
    assert care["command"][:2] == ["care", "serve"]
    assert "KIDJAMO_DATABASE_URL" not in care["environment"]
    assert care["environment"]["KIDJAMO_CARE_DATABASE_URL"].startswith("postgresql://kidjamo_authenticator:")
    assert all(port.startswith("127.0.0.1:") for port in care["ports"])


def test_make_run_provisions_one_demo_clinician_of_the_hypoxic_patients_team(ward, care_app, tmp_path):
    from ingestion.simulator.fleet import Fleet
    from kidjamo.cli.commands.run import _demo_clinician

    settings = ward.settings.model_copy(update={"home": tmp_path})
    login, password = _demo_clinician(ward.url, settings, 20)
    assert _demo_clinician(ward.url, settings, 20) == (login, password)  # the same login across runs
    assert ward.query("SELECT kidjamo.care_teams_of(%s)", (login,)) == [(Fleet.generate(20, seed=0).care_teams[0],)]
    assert log_in(care_app.base_url, login, password).get("/board").status_code == 200
    assert oct((tmp_path / "care" / "demo-login.json").stat().st_mode & 0o777) == "0o600"
    with psycopg.connect(ward.url, autocommit=True) as connection:
        for table in ("clinician_credentials", "care_team_members", "care_sessions"):
            connection.execute(sql.SQL("DELETE FROM kidjamo.{} WHERE role_name = %s").format(sql.Identifier(table)), (login,))
        connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
