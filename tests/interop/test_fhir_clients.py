"""Care-system tokens on the real warehouse: stored hashed, rotated, revoked, listed without secrets, audited."""

from __future__ import annotations

import psycopg
import pytest

from transforms.fhir.clients import ClientError, add_client, authenticate, list_clients, revoke_client, rotate_client, token_hash


def test_a_token_authenticates_its_client_and_only_its_hash_is_stored(fresh_database_url):
    token = add_client(fresh_database_url, "ehr-a", ["team-a", "team-b", "team-a"], description="ward A")
    client = authenticate(fresh_database_url, token)
    assert client.client_id == "ehr-a" and client.care_teams == ("team-a", "team-b")
    with psycopg.connect(fresh_database_url) as connection:
        stored = connection.execute("SELECT token_hash FROM kidjamo.fhir_clients").fetchone()[0]
    assert stored == token_hash(token) and token not in stored
    assert authenticate(fresh_database_url, token + "x") is None
    assert authenticate(fresh_database_url, "not-a-kidjamo-token") is None


def test_rotation_replaces_the_token_at_once(fresh_database_url):
    old = add_client(fresh_database_url, "ehr-b", ["team-a"])
    new = rotate_client(fresh_database_url, "ehr-b")
    assert authenticate(fresh_database_url, old) is None
    assert authenticate(fresh_database_url, new).client_id == "ehr-b"


def test_a_revoked_client_no_longer_authenticates_and_is_listed_as_revoked(fresh_database_url):
    token = add_client(fresh_database_url, "ehr-c", ["team-a"])
    revoke_client(fresh_database_url, "ehr-c")
    assert authenticate(fresh_database_url, token) is None
    (listed,) = list_clients(fresh_database_url)
    assert listed["client_id"] == "ehr-c" and listed["revoked_at"] is not None
    assert "token_hash" not in listed
    with pytest.raises(ClientError, match="no active FHIR client 'ehr-c'"):
        revoke_client(fresh_database_url, "ehr-c")


def test_a_client_needs_a_care_team_and_a_unique_name(fresh_database_url):
    with pytest.raises(ClientError, match="at least one care team"):
        add_client(fresh_database_url, "ehr-d", [" "])
    add_client(fresh_database_url, "ehr-d", ["team-a"])
    with pytest.raises(ClientError, match="already exists"):
        add_client(fresh_database_url, "ehr-d", ["team-b"])
    with pytest.raises(ClientError, match="no FHIR client"):
        rotate_client(fresh_database_url, "nobody")


def test_creating_rotating_and_revoking_clients_is_audited(fresh_database_url):
    add_client(fresh_database_url, "ehr-e", ["team-a"])
    rotate_client(fresh_database_url, "ehr-e")
    revoke_client(fresh_database_url, "ehr-e")
    with psycopg.connect(fresh_database_url) as connection:
        actions = [row[0] for row in connection.execute(
            "SELECT action FROM kidjamo.audit_log WHERE table_name = 'kidjamo.fhir_clients' ORDER BY audit_id")]
    assert actions == ["INSERT", "UPDATE", "UPDATE"]
