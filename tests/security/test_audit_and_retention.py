"""Attacks on the audit trail and on retention: forged actors, events recorded by the wrong role, future cutoffs."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from tests.security.support import login_url, logins

Denied = psycopg.errors.InsufficientPrivilege
PIPELINE_LOGIN = "sec_audit_pipeline"
LOGINS = {PIPELINE_LOGIN: "kidjamo_pipeline", "sec_audit_ingest": "kidjamo_ingest", "sec_audit_clinician": "kidjamo_clinician",
          "sec_audit_analyst": "kidjamo_analyst"}


@pytest.fixture(scope="module")
def audit_url(postgres_server):
    """A migrated database and one login role per component group (cluster-wide; dropped afterwards)."""
    from tests.databases import migrated_database

    with migrated_database(postgres_server, "t_security_audit") as url, logins(url, LOGINS):
        yield url


def audit_rows(url: str, action: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT actor, acting_role, on_behalf_of FROM kidjamo.audit_log WHERE action = %s ORDER BY audit_id",
                                  (action,)).fetchall()


def test_the_actor_is_the_login_whatever_the_session_claims(audit_url):
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection:
        connection.execute("SET kidjamo.actor = 'dr.forged'")
        connection.execute("SELECT kidjamo.record_audit_event('registry_import', '{\"file\": \"r.csv\"}')")
    assert audit_rows(audit_url, "registry_import")[-1] == (PIPELINE_LOGIN, PIPELINE_LOGIN, "dr.forged")


def test_on_behalf_of_is_recorded_apart_from_the_actor(audit_url):
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection:
        connection.execute("SELECT kidjamo.record_audit_event('retention', '{}', NULL, 'cron on host-7')")
    assert audit_rows(audit_url, "retention")[-1] == (PIPELINE_LOGIN, PIPELINE_LOGIN, "cron on host-7")


@pytest.mark.parametrize("action", ["patient_erasure", "patient_export", "clinician_added", "partition_dropped", "anything"])
def test_the_pipeline_cannot_record_events_it_does_not_perform(audit_url, action):
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection, pytest.raises(Denied, match="may not record"):
        connection.execute("SELECT kidjamo.record_audit_event(%s, '{}', 'patient-001')", (action,))


@pytest.mark.parametrize("login", ["sec_audit_analyst", "kidjamo_authenticator"])
def test_roles_without_audited_actions_cannot_call_record_audit_event(audit_url, login):
    with psycopg.connect(login_url(audit_url, login)) as connection, pytest.raises(Denied):
        connection.execute("SELECT kidjamo.record_audit_event('registry_import', '{}')")


@pytest.mark.parametrize("login", ["sec_audit_clinician", "sec_audit_ingest"])
def test_other_component_roles_cannot_record_the_pipelines_events(audit_url, login):
    with psycopg.connect(login_url(audit_url, login)) as connection, pytest.raises(Denied, match="may not record"):
        connection.execute("SELECT kidjamo.record_audit_event('registry_import', '{}')")


def test_a_row_change_is_audited_under_the_login_not_the_claimed_actor(audit_url):
    with psycopg.connect(audit_url) as connection:
        connection.execute("INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype) VALUES ('p-audit', '2015-01-01', 'F', 'HbSS')")
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection:
        connection.execute("SELECT set_config('kidjamo.actor', 'someone.else', false)")
        connection.execute("UPDATE kidjamo.patients SET baseline_spo2 = 94 WHERE patient_id = 'p-audit'")
    with psycopg.connect(audit_url) as connection:
        row = connection.execute("SELECT actor, login_role, on_behalf_of FROM kidjamo.audit_log"
                                 " WHERE action = 'UPDATE' AND patient_id = 'p-audit'").fetchone()
    assert row == (PIPELINE_LOGIN, PIPELINE_LOGIN, "someone.else")


def test_the_pipeline_cannot_grant_itself_an_event(audit_url):
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection, pytest.raises(Denied):
        connection.execute("INSERT INTO kidjamo.audit_event_roles VALUES ('patient_erasure', 'kidjamo_pipeline')")


# --- retention ----------------------------------------------------------------------------------
def partitions(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'kidjamo.measurements'::regclass ORDER BY 1")]


def today_utc() -> date:
    return datetime.now(timezone.utc).date()


@pytest.mark.parametrize("days_from_today", [365, 1, 0, -6])
def test_retention_refuses_a_cutoff_later_than_today_minus_the_minimum(audit_url, days_from_today):
    """The attack of the review: a cutoff in the future dropped tomorrow's partition (and everything before)."""
    today = today_utc()
    with psycopg.connect(audit_url) as connection:
        connection.execute("SELECT kidjamo.ensure_measurement_partitions(%s, %s)", (today - timedelta(days=3), today + timedelta(days=2)))
    before = partitions(audit_url)
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection, \
            pytest.raises(psycopg.errors.InvalidParameterValue, match="retention minimum of 7 days"):
        connection.execute("SELECT kidjamo.drop_measurement_partitions_before(%s)", (today + timedelta(days=days_from_today),))
    assert partitions(audit_url) == before


def test_retention_drops_old_partitions_and_audits_each_drop(audit_url):
    today = today_utc()
    first, last = today - timedelta(days=12), today - timedelta(days=9)
    with psycopg.connect(audit_url) as connection:
        connection.execute("SELECT kidjamo.ensure_measurement_partitions(%s, %s)", (first, last))
    cutoff = today - timedelta(days=7)
    with psycopg.connect(login_url(audit_url, PIPELINE_LOGIN)) as connection:
        dropped = connection.execute("SELECT kidjamo.drop_measurement_partitions_before(%s)", (cutoff,)).fetchone()[0]
    expected = [f"kidjamo.measurements_{first + timedelta(days=n):%Y%m%d}" for n in range(4)]
    assert dropped == expected
    with psycopg.connect(audit_url) as connection:
        audited = connection.execute("SELECT table_name, actor, detail ->> 'cutoff' FROM kidjamo.audit_log"
                                     " WHERE action = 'partition_dropped' ORDER BY audit_id").fetchall()
    assert audited == [(name, PIPELINE_LOGIN, cutoff.isoformat()) for name in expected]
