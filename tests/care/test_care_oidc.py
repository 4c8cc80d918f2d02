"""The hospital login (OpenID Connect) against a real provider served over HTTP: oidc-provider-mock, an
Authlib-based OpenID provider in a Werkzeug server, with registered clients and nonces required.

A provisioned clinician logs in at the hospital and gets the same database session as a password
login (their team only); an unknown identity, a forged or replayed state, a login begun in another
browser, a replayed code, a wrong nonce, a token for another audience, an expired or tampered token
are refused, nothing is opened, and each refusal is audited.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import psycopg
import pytest
from psycopg import sql

from care.app import create_app
from care.auth import Gatekeeper, now_utc, provision_clinician
from care.oidc import HospitalLogin, HospitalLoginRefused
from tests.care.conftest import Served, free_port, log_in

pytestmark = pytest.mark.slow  # an OpenID provider, a uvicorn server and the pipeline

OLIVIA = "care_olivia"  # a team-a clinician with a hospital identity and no web password
OLIVIA_SUBJECT = "olivia.ngo@hopital-laquintinie.cm"


@pytest.fixture(scope="module")
def provider():
    """The hospital's identity provider on a free port; yields (issuer, register a client)."""
    from oidc_provider_mock import run_server_in_thread

    previous = os.environ.get("AUTHLIB_INSECURE_TRANSPORT")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the provider's own check: plain http on loopback in tests
    try:
        with run_server_in_thread(require_client_registration=True, require_nonce=True) as server:
            issuer = f"http://localhost:{server.server_port}"

            def register(redirect_uri: str) -> dict:
                response = httpx.post(f"{issuer}/oauth2/clients", json={"redirect_uris": [redirect_uri]}, timeout=10)
                response.raise_for_status()
                return response.json()

            yield issuer, register
    finally:
        if previous is None:
            os.environ.pop("AUTHLIB_INSECURE_TRANSPORT", None)
        else:
            os.environ["AUTHLIB_INSECURE_TRANSPORT"] = previous


@pytest.fixture(scope="module")
def hospital(ward, provider):
    """The care app with the hospital login on, its settings, and clinician Olivia mapped to her subject."""
    issuer, register = provider
    port = free_port()
    callback = f"http://127.0.0.1:{port}/login/oidc/callback"
    client = register(callback)
    settings = ward.settings.model_copy(update={
        "care_oidc_issuer": issuer, "care_oidc_client_id": client["client_id"],
        "care_oidc_client_secret": client["client_secret"], "care_oidc_provider_name": "Hôpital Laquintinie"})
    with psycopg.connect(ward.url) as connection:
        provision_clinician(connection, OLIVIA, ["team-a"], None, oidc_issuer=issuer, oidc_subject=OLIVIA_SUBJECT)
    served = Served(create_app(ward.app_url, settings), port).start()
    try:
        yield served, settings
    finally:
        served.stop()
        with psycopg.connect(ward.url, autocommit=True) as connection:
            connection.execute("DELETE FROM kidjamo.clinician_identities WHERE role_name = %s", (OLIVIA,))
            connection.execute("DELETE FROM kidjamo.care_sessions WHERE role_name = %s", (OLIVIA,))
            connection.execute("DELETE FROM kidjamo.care_team_members WHERE role_name = %s", (OLIVIA,))
            connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(OLIVIA)))


def begin(base_url: str) -> tuple[httpx.Client, str]:
    """A browser at the login page pressing the hospital button: (its client, the provider's authorization URL)."""
    browser = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    assert 'href="/login/oidc" data-login="oidc"' in browser.get("/login").text
    started = browser.get("/login/oidc")
    assert started.status_code == 303, started.text
    return browser, started.headers["location"]


def authorize(authorization_url: str, subject: str) -> dict:
    """The user authenticating at the provider as ``subject``: the query of the provider's redirect back."""
    response = httpx.post(authorization_url, data={"sub": subject}, timeout=30)
    assert response.status_code == 302, response.text
    return {key: values[0] for key, values in parse_qs(urlparse(response.headers["location"]).query).items()}


def audit_rows(ward, action: str) -> list[dict]:
    return [row[0] for row in ward.query("SELECT detail FROM kidjamo.audit_log WHERE action = %s ORDER BY audit_id",
                                         (action,))]


def refused_reasons(ward, since: int) -> list[str]:
    return [row["reason"] for row in audit_rows(ward, "care_login_refused")[since:] if row.get("method") == "oidc"]


def assert_no_session(browser: httpx.Client, response: httpx.Response) -> None:
    assert response.status_code == 403
    assert "kidjamo_care_session" not in response.cookies
    assert browser.get("/board").status_code == 303  # back to the login page


def test_a_provisioned_clinician_logs_in_at_the_hospital_and_sees_only_their_team(ward, hospital):
    served, settings = hospital
    browser, url = begin(served.base_url)
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    (verifier,) = ward.query("SELECT code_verifier FROM kidjamo.care_oidc_logins WHERE state_hash = %s",
                             (hashlib.sha256(query["state"][0].encode()).digest(),))[0]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == [challenge]  # PKCE S256 of the verifier kept server-side

    back = authorize(url, OLIVIA_SUBJECT)
    signed_in = browser.get("/login/oidc/callback", params=back)
    assert signed_in.status_code == 200 and 'url=/board' in signed_in.text
    cookie = next(c for c in signed_in.headers.get_list("set-cookie") if c.startswith("kidjamo_care_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    board = browser.get("/board")
    assert board.status_code == 200 and f"data-login>{OLIVIA}<" in board.text
    assert set(re.findall(r'data-patient="([^"]+)"', board.text)) == set(ward.team_a)
    assert ward.query("SELECT method FROM kidjamo.care_sessions WHERE role_name = %s", (OLIVIA,)) == [("oidc",)]
    login = audit_rows(ward, "care_login")[-1]
    assert (login["login"], login["method"], login["subject"], login["issuer"]) == (
        OLIVIA, "oidc", OLIVIA_SUBJECT, settings.care_oidc_issuer)
    assert browser.get(f"/patients/{ward.team_b[0]}").status_code == 404  # RLS, as for a password session
    secrets_kept_out = (settings.care_oidc_client_secret, back["code"], back["state"], verifier)
    assert ward.query("SELECT count(*) FROM kidjamo.audit_log WHERE " + " OR ".join(["strpos(detail::text, %s) > 0"] * 4),
                      secrets_kept_out) == [(0,)]
    assert browser.post("/logout", data={"csrf_token": re.search(
        r'name="csrf_token" value="([^"]+)"', board.text).group(1)}).status_code == 303
    assert ward.query("SELECT count(*) FROM kidjamo.care_sessions WHERE role_name = %s", (OLIVIA,)) == [(0,)]


def test_an_unknown_identity_is_refused_and_audited(ward, hospital):
    served, _ = hospital
    before = len(audit_rows(ward, "care_login_refused"))
    browser, url = begin(served.base_url)
    refused = browser.get("/login/oidc/callback", params=authorize(url, "mallory@hopital-laquintinie.cm"))
    assert "soignant Kidjamo" in refused.text  # in words, in the page's language (French by default)
    assert_no_session(browser, refused)
    denied = audit_rows(ward, "care_login_refused")[before:]
    assert [(row["reason"], row["subject"]) for row in denied] == [("unknown_identity", "mallory@hopital-laquintinie.cm")]
    assert ward.query("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mallory%%'") == [(0,)]  # nothing provisioned


def test_a_forged_or_replayed_state_is_refused(ward, hospital):
    served, _ = hospital
    before = len(audit_rows(ward, "care_login_refused"))
    browser, url = begin(served.base_url)
    back = authorize(url, OLIVIA_SUBJECT)
    forged = browser.get("/login/oidc/callback", params={**back, "state": "forged-state"})
    assert_no_session(browser, forged)

    replayer, url = begin(served.base_url)
    oidc_cookie = replayer.cookies.get("kidjamo_care_oidc")
    back = authorize(url, OLIVIA_SUBJECT)
    assert replayer.get("/login/oidc/callback", params=back).status_code == 200
    again = httpx.Client(base_url=served.base_url, follow_redirects=False, timeout=30)
    again.cookies.set("kidjamo_care_oidc", oidc_cookie)
    assert_no_session(again, again.get("/login/oidc/callback", params=back))  # the same callback, once more
    assert refused_reasons(ward, before) == ["bad_state", "bad_state"]


def test_a_login_begun_in_another_browser_is_refused(ward, hospital):
    """Login CSRF: an attacker's own callback URL, opened in the victim's browser, opens nothing."""
    served, _ = hospital
    before = len(audit_rows(ward, "care_login_refused"))
    _, url = begin(served.base_url)
    back = authorize(url, OLIVIA_SUBJECT)
    victim = httpx.Client(base_url=served.base_url, follow_redirects=False, timeout=30)
    assert_no_session(victim, victim.get("/login/oidc/callback", params=back))
    assert refused_reasons(ward, before) == ["bad_state"]


def test_a_replayed_code_is_refused(ward, hospital):
    served, _ = hospital
    before = len(audit_rows(ward, "care_login_refused"))
    browser, url = begin(served.base_url)
    used = authorize(url, OLIVIA_SUBJECT)
    assert browser.get("/login/oidc/callback", params=used).status_code == 200
    thief, url = begin(served.base_url)  # a fresh login of its own, with the used code
    fresh = authorize(url, "someone-else")
    replay = thief.get("/login/oidc/callback", params={"state": fresh["state"], "code": used["code"]})
    assert_no_session(thief, replay)
    assert refused_reasons(ward, before) == ["code_refused"]


def test_an_id_token_with_another_nonce_is_refused(ward, hospital):
    """A code obtained with a nonce other than the one this login sent (an injected authorization response)."""
    served, _ = hospital
    before = len(audit_rows(ward, "care_login_refused"))
    browser, url = begin(served.base_url)
    parts = urlparse(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    injected = parts._replace(query=urlencode({**query, "nonce": "attackers-nonce"})).geturl()
    assert_no_session(browser, browser.get("/login/oidc/callback", params=authorize(injected, OLIVIA_SUBJECT)))
    assert refused_reasons(ward, before) == ["bad_id_token"]
    assert audit_rows(ward, "care_login_refused")[-1]["claim"] == "nonce"


def id_token_of_a_new_client(provider, nonce: str) -> tuple[str, str]:
    """(client id, ID token) of an application registered now, after its own code flow as Olivia."""
    issuer, register = provider
    redirect = "http://127.0.0.1:9/other-app"
    client = register(redirect)
    metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    back = authorize(f"{metadata['authorization_endpoint']}?" + urlencode({
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect, "scope": "openid",
        "state": "other", "nonce": nonce}), OLIVIA_SUBJECT)
    token = httpx.post(metadata["token_endpoint"], data={"grant_type": "authorization_code", "code": back["code"],
                                                         "redirect_uri": redirect},
                       auth=(client["client_id"], client["client_secret"]), timeout=10)
    token.raise_for_status()
    return client["client_id"], token.json()["id_token"]


def test_a_token_for_another_audience_is_refused(ward, hospital, provider):
    served, settings = hospital
    relying_party = HospitalLogin(settings, Gatekeeper(ward.app_url, settings))
    _, id_token = id_token_of_a_new_client(provider, nonce="n-1")  # issued to another application
    with pytest.raises(HospitalLoginRefused) as refused:
        relying_party.verify_id_token(id_token, nonce="n-1", now=now_utc())
    assert (refused.value.reason, refused.value.detail["claim"]) == ("bad_id_token", "aud")

    # Through the callback: a code issued to the other application is not exchanged for this one.
    before = len(audit_rows(ward, "care_login_refused"))
    issuer, register = provider
    other = register("http://127.0.0.1:9/other-app")
    browser, url = begin(served.base_url)
    parts = urlparse(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    foreign = authorize(parts._replace(query=urlencode({**query, "client_id": other["client_id"],
                                                        "redirect_uri": "http://127.0.0.1:9/other-app"})).geturl(),
                        OLIVIA_SUBJECT)
    assert_no_session(browser, browser.get("/login/oidc/callback", params={"state": query["state"], "code": foreign["code"]}))
    assert refused_reasons(ward, before) == ["code_refused"]


def test_an_expired_or_tampered_id_token_is_refused(ward, hospital, provider):
    _, settings = hospital
    # An ID token issued to this relying party, verified two hours later (the provider's tokens live one hour).
    client_id, id_token = id_token_of_a_new_client(provider, nonce="n-2")
    mine = HospitalLogin(settings.model_copy(update={"care_oidc_client_id": client_id}),
                         Gatekeeper(ward.app_url, settings))
    assert mine.verify_id_token(id_token, nonce="n-2", now=now_utc()).subject == OLIVIA_SUBJECT
    with pytest.raises(HospitalLoginRefused) as expired:
        mine.verify_id_token(id_token, nonce="n-2", now=now_utc() + timedelta(hours=2))
    assert expired.value.detail["claim"] == "exp"

    header, payload, signature = id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "care_bob"}).encode()).rstrip(b"=").decode()
    with pytest.raises(HospitalLoginRefused) as tampered:
        mine.verify_id_token(f"{header}.{forged_payload}.{signature}", nonce="n-2", now=now_utc())
    assert tampered.value.reason == "bad_id_token"
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    with pytest.raises(HospitalLoginRefused):
        mine.verify_id_token(f"{unsigned}.{payload}.", nonce="n-2", now=now_utc())
    with pytest.raises(HospitalLoginRefused) as wrong_nonce:
        mine.verify_id_token(id_token, nonce="another", now=now_utc())
    assert wrong_nonce.value.detail["claim"] == "nonce"


def test_the_password_login_still_works_and_the_button_shows_only_when_configured(ward, hospital, care_app):
    served, _ = hospital
    page = httpx.get(f"{served.base_url}/login", headers={"Accept-Language": "fr"}).text
    assert "Se connecter avec Hôpital Laquintinie" in page
    assert 'data-login="oidc"' not in httpx.get(f"{care_app.base_url}/login").text
    alice = log_in(served.base_url, "care_alice")
    assert set(re.findall(r'data-patient="([^"]+)"', alice.get("/board").text)) == set(ward.team_a)
    assert ward.query("SELECT method FROM kidjamo.care_sessions WHERE role_name = 'care_alice' ORDER BY created_at DESC"
                      " LIMIT 1") == [("password",)]


def test_an_unreachable_provider_leaves_the_password_login(ward):
    settings = ward.settings.model_copy(update={"care_oidc_issuer": f"http://127.0.0.1:{free_port()}",
                                                "care_oidc_client_id": "kidjamo-care"})
    served = Served(create_app(ward.app_url, settings), free_port()).start()
    try:
        browser = httpx.Client(base_url=served.base_url, follow_redirects=False, timeout=30)
        response = browser.get("/login/oidc", headers={"Accept-Language": "en"})
        assert response.status_code == 503 and "log in with your password" in response.text
        assert 'name="password"' in response.text
    finally:
        served.stop()


def test_an_issuer_over_plain_http_beyond_this_machine_is_refused(ward):
    settings = ward.settings.model_copy(update={"care_oidc_issuer": "http://idp.hospital.example",
                                                "care_oidc_client_id": "kidjamo-care"})
    with pytest.raises(ValueError, match="must be an https URL"):
        HospitalLogin(settings, Gatekeeper(ward.app_url, settings))


@pytest.mark.browser
def test_the_hospital_login_round_trip_in_a_browser(ward, hospital, provider):
    """Chromium: the login page's hospital button, the provider's page (another site), back to the board."""
    from playwright.sync_api import sync_playwright

    from tests.care.conftest import ARTIFACTS
    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    served, _ = hospital
    issuer, _ = provider
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="fr",
                                           extra_http_headers={"Accept-Language": "fr"})
            page = context.new_page()
            page.goto(f"{served.base_url}/login")
            assert page.inner_text('a[data-login="oidc"]') == "Se connecter avec Hôpital Laquintinie"
            page.screenshot(path=str(ARTIFACTS / "login-hospital-fr-desk.png"), full_page=True)
            page.click('a[data-login="oidc"]')
            page.wait_for_url(f"{issuer}/oauth2/authorize*")
            page.fill("input[name=sub]", OLIVIA_SUBJECT)
            page.click("button:has-text('Authorize')")
            page.wait_for_url(f"{served.base_url}/board")
            assert page.inner_text("[data-login]") == OLIVIA
            listed = page.eval_on_selector_all("tbody#board-rows tr[data-patient]",
                                               "rows => rows.map(row => row.dataset.patient)")
            assert set(listed) == set(ward.team_a)
            session = next(c for c in context.cookies() if c["name"] == "kidjamo_care_session")
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            context.close()
        finally:
            chromium.close()
