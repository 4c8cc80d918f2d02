"""Attacks on device credentials: who can read them, and whether what is stored can sign as the device."""

from __future__ import annotations

import hashlib
import time

import psycopg
import pytest

from ingestion.auth import (AuthError, CredentialStore, ReplayGuard, api_key_verifier, generate_secret, register_device,
                            signature, signing_key, verify_request)
from kidjamo.warehouse import migrations
from tests.security.support import login_url, logins

Denied = psycopg.errors.InsufficientPrivilege
LOGINS = {"sec_cred_pipeline": "kidjamo_pipeline", "sec_cred_ingest": "kidjamo_ingest", "sec_cred_analyst": "kidjamo_analyst"}


@pytest.fixture(scope="module")
def credentials_url(postgres_server):
    """A database with one patient, device-001 registered, and a login role per component group."""
    from tests.databases import migrated_database

    with migrated_database(postgres_server, "t_security_credentials") as url, logins(url, LOGINS):
        with psycopg.connect(url) as connection:
            connection.execute("INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype) VALUES ('patient-001', '2015-01-01', 'F', 'HbSS')")
        yield url, register_device(url, "device-001", patient_id="patient-001")


@pytest.mark.parametrize("login", ["sec_cred_pipeline", "sec_cred_analyst", "kidjamo_authenticator"])
def test_only_the_ingest_role_reads_device_credentials(credentials_url, login):
    url, _ = credentials_url
    with psycopg.connect(login_url(url, login)) as connection, pytest.raises(Denied):
        connection.execute("SELECT * FROM kidjamo.device_credentials")


@pytest.mark.parametrize("statement", [
    "UPDATE kidjamo.device_credentials SET revoked_at = NULL",
    "INSERT INTO kidjamo.device_credentials (device_id, api_key_verifier, signing_key) VALUES ('device-001', repeat('0', 64), repeat('0', 64))",
    "DELETE FROM kidjamo.device_credentials",
])
@pytest.mark.parametrize("login", ["sec_cred_pipeline", "sec_cred_ingest"])
def test_no_component_rewrites_device_credentials(credentials_url, login, statement):
    url, _ = credentials_url
    with psycopg.connect(login_url(url, login)) as connection, pytest.raises(Denied):
        connection.execute(statement)


def test_the_ingest_role_reads_credentials_but_not_patient_identity(credentials_url):
    url, _ = credentials_url
    with psycopg.connect(login_url(url, "sec_cred_ingest")) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.device_credentials").fetchone()[0] == 1
        with pytest.raises(Denied):
            connection.execute("SELECT birth_date FROM kidjamo.patients")


def test_nothing_stored_is_the_secret_or_its_plain_hash(credentials_url):
    url, secret = credentials_url
    with psycopg.connect(url) as connection:
        stored = connection.execute("SELECT row_to_json(c)::text FROM kidjamo.device_credentials c").fetchone()[0]
    assert secret not in stored and hashlib.sha256(secret.encode()).hexdigest() not in stored
    assert api_key_verifier(secret) in stored and signing_key(secret) in stored


def test_the_api_key_verifier_cannot_sign_a_request(credentials_url):
    """The attack of the review: whoever read the stored hash could sign as the device."""
    url, secret = credentials_url
    store = CredentialStore(url)
    store.refresh()
    credential = store.get("device-001")
    store.close()
    body, timestamp = b'{"x": 1}', str(int(time.time()))
    forged = {"x-device-id": "device-001", "x-timestamp": timestamp, "x-signature": signature(credential.api_key_verifier, timestamp, body)}
    with pytest.raises(AuthError, match="wrong signature"):
        verify_request(credential, forged, body, replay_guard=ReplayGuard(300), now=time.time())
    with pytest.raises(AuthError, match="wrong API key"):
        verify_request(credential, {"x-device-id": "device-001", "x-api-key": credential.api_key_verifier}, body,
                       replay_guard=ReplayGuard(300), now=time.time())
    genuine = {"x-device-id": "device-001", "x-timestamp": timestamp, "x-signature": signature(signing_key(secret), timestamp, body)}
    assert verify_request(credential, genuine, body, replay_guard=ReplayGuard(300), now=time.time()) == credential


@pytest.mark.parametrize("bad_signature", ["é" * 64, "\udcff" * 10, "ｆ" * 64, ""])
def test_a_non_ascii_signature_is_refused_as_an_auth_error(credentials_url, bad_signature):
    url, _ = credentials_url
    store = CredentialStore(url)
    store.refresh()
    store.close()
    headers = {"x-device-id": "device-001", "x-timestamp": str(int(time.time())), "x-signature": bad_signature}
    with pytest.raises(AuthError):
        verify_request(store.get("device-001"), headers, b"{}", replay_guard=ReplayGuard(300), now=time.time())


def test_the_migration_derives_the_new_keys_from_the_old_stored_hash(postgres_server):
    """A device registered before 0008 keeps working with its secret: SQL and Python derive the same keys."""
    admin = postgres_server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS t_security_cred_migration WITH (FORCE)")
        connection.execute("CREATE DATABASE t_security_cred_migration")
    url = postgres_server.url("t_security_cred_migration")
    try:
        migrations.migrate(url, "0006")
        secret, old_secret = generate_secret(), generate_secret()
        with psycopg.connect(url) as connection:
            connection.execute("INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype) VALUES ('p', '2015-01-01', 'F', 'HbSS')")
            connection.execute("INSERT INTO kidjamo.devices (device_id, patient_id) VALUES ('d', 'p')")
            connection.execute("INSERT INTO kidjamo.device_credentials (device_id, secret_hash, previous_secret_hash, previous_valid_until)"
                               " VALUES ('d', %s, %s, now() + interval '1 hour')",
                               (hashlib.sha256(secret.encode()).hexdigest(), hashlib.sha256(old_secret.encode()).hexdigest()))
        migrations.migrate(url)
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT api_key_verifier, signing_key, previous_api_key_verifier, previous_signing_key"
                                     " FROM kidjamo.device_credentials").fetchone()
        assert row == (api_key_verifier(secret), signing_key(secret), api_key_verifier(old_secret), signing_key(old_secret))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute("DROP DATABASE IF EXISTS t_security_cred_migration WITH (FORCE)")
