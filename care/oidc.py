"""The hospital's login (optional): OpenID Connect authorization-code flow with PKCE, state and nonce.

On when ``KIDJAMO_CARE_OIDC_ISSUER`` and ``KIDJAMO_CARE_OIDC_CLIENT_ID`` are set. Authlib builds the
authorization request and exchanges the code (PKCE S256); the ID token is verified here with
Authlib's ``CodeIDToken`` claims over joserfc: signature by a key of the provider's JWKS
(asymmetric algorithms only), issuer, audience (and ``azp``), expiry, issue time and nonce.

A login in flight is a row of ``kidjamo.care_oidc_logins`` keyed by the hash of its ``state`` and
bound to the browser that began it (hash of a cookie). The callback deletes that row before doing
anything else, so a state, and the code that came with it, is good once. The provider's identity
(issuer, ``sub``) opens a session only when ``kidjamo clinicians add --oidc-subject`` mapped it to
a clinician: no self-provisioning. Every refusal is audited as ``care_login_refused`` with its
reason; no token, code or secret is ever logged or audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlparse

import httpx
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from care.auth import Clinician, Gatekeeper, audit
from kidjamo.settings import Settings

#: How long a login may take between the login page and the provider's callback.
LOGIN_TTL = timedelta(minutes=10)
#: Clock difference tolerated between the provider and this server on exp/iat/nbf (seconds).
LEEWAY_SECONDS = 60
#: ID-token signatures accepted: the provider's keys, never HMAC with the shared secret, never "none".
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
HTTP_TIMEOUT = 10.0


class HospitalLoginRefused(Exception):
    """A hospital login that does not open a session; ``reason`` names why (audited, shown in words)."""

    def __init__(self, reason: str, detail: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or {}


@dataclass(frozen=True)
class VerifiedIdentity:
    """The claims of a verified ID token that the app uses."""

    issuer: str
    subject: str


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _secure_issuer(issuer: str) -> bool:
    """https, or plain http to this machine only (a provider run for tests or development)."""
    url = urlparse(issuer)
    return url.scheme == "https" or (url.scheme == "http" and url.hostname in ("localhost", "127.0.0.1", "::1"))


class HospitalLogin:
    """The OpenID Connect relying party of one care-team app."""

    def __init__(self, settings: Settings, gate: Gatekeeper):
        if not settings.care_oidc_enabled:
            raise ValueError("the hospital login needs KIDJAMO_CARE_OIDC_ISSUER and KIDJAMO_CARE_OIDC_CLIENT_ID")
        if not _secure_issuer(settings.care_oidc_issuer):
            raise ValueError(f"KIDJAMO_CARE_OIDC_ISSUER {settings.care_oidc_issuer!r} must be an https URL")
        self.issuer = settings.care_oidc_issuer
        self.client_id = settings.care_oidc_client_id
        self._client_secret = settings.care_oidc_client_secret
        self.redirect_url = settings.care_oidc_redirect_url
        self.gate = gate
        self._metadata: dict | None = None
        self._keys: KeySet | None = None

    def metadata(self) -> dict:
        """The provider's discovery document (fetched once); its issuer must be the configured one."""
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                response = httpx.get(url, timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as error:
                raise HospitalLoginRefused("provider_unavailable", {"url": url, "error": type(error).__name__}) from None
            if document.get("issuer") != self.issuer:
                # OpenID Connect Discovery 1.0 §4.3: a document naming another issuer is not this provider's.
                raise HospitalLoginRefused("provider_unavailable", {"url": url, "error": "issuer_mismatch",
                                                                    "issuer": str(document.get("issuer"))[:200]})
            self._metadata = document
        return self._metadata

    def _key_set(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            try:
                response = httpx.get(self.metadata()["jwks_uri"], timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, KeyError, ValueError, JoseError) as error:
                raise HospitalLoginRefused("provider_unavailable", {"error": f"jwks: {type(error).__name__}"}) from None
        return self._keys

    def _client(self, redirect_uri: str) -> OAuth2Client:
        return OAuth2Client(client_id=self.client_id, client_secret=self._client_secret, scope="openid",
                            redirect_uri=redirect_uri, code_challenge_method="S256", timeout=HTTP_TIMEOUT,
                            token_endpoint_auth_method="client_secret_basic" if self._client_secret else "none")

    def start(self, browser_token: str, redirect_uri: str, *, now: datetime) -> str:
        """Record a login in flight for this browser and return the provider's authorization URL."""
        redirect_uri = self.redirect_url or redirect_uri
        authorization_endpoint = self.metadata()["authorization_endpoint"]
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        with self.gate.authenticator() as connection:
            connection.execute("DELETE FROM kidjamo.care_oidc_logins WHERE expires_at < %s", (now,))
            connection.execute(
                "INSERT INTO kidjamo.care_oidc_logins (state_hash, browser_hash, nonce, code_verifier, redirect_uri,"
                " created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (_hash(state), _hash(browser_token), nonce, verifier, redirect_uri, now, now + LOGIN_TTL))
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(authorization_endpoint, state=state, nonce=nonce,
                                                     code_verifier=verifier)
        return url

    def finish(self, browser_token: str | None, *, state: str, code: str, error: str, client: str | None,
               now: datetime) -> tuple[str, Clinician]:
        """The provider's callback: check state and browser, exchange the code, verify the ID token, map the
        identity to a clinician and open their session. Raises :class:`HospitalLoginRefused` (audited)."""
        try:
            return self._finish(browser_token, state=state, code=code, error=error, client=client, now=now)
        except HospitalLoginRefused as refused:
            with self.gate.authenticator() as connection:
                audit(connection, "care_login_refused", {"method": "oidc", "client": client, "reason": refused.reason,
                                                         **refused.detail})
            raise

    def _finish(self, browser_token: str | None, *, state: str, code: str, error: str, client: str | None,
                now: datetime) -> tuple[str, Clinician]:
        with self.gate.authenticator() as connection:
            # Deleted first, committed whatever follows: a state is good once, even when the rest fails.
            row = connection.execute(
                "DELETE FROM kidjamo.care_oidc_logins WHERE state_hash = %s"
                " RETURNING browser_hash, nonce, code_verifier, redirect_uri, expires_at", (_hash(state),)).fetchone()
        if row is None:
            raise HospitalLoginRefused("bad_state", {"why": "unknown or already used state"})
        browser_hash, nonce, verifier, redirect_uri, expires_at = row
        if not browser_token or not hmac.compare_digest(browser_hash, _hash(browser_token)):
            raise HospitalLoginRefused("bad_state", {"why": "begun in another browser"})
        if expires_at <= now:
            raise HospitalLoginRefused("bad_state", {"why": "expired"})
        if error:
            raise HospitalLoginRefused("provider_refused", {"error": error[:100]})
        if not code:
            raise HospitalLoginRefused("provider_refused", {"error": "no code"})
        try:
            with self._client(redirect_uri) as oauth:
                token = oauth.fetch_token(self.metadata()["token_endpoint"], grant_type="authorization_code", code=code,
                                          code_verifier=verifier)
        except OAuthError as refused:
            raise HospitalLoginRefused("code_refused", {"error": str(refused.error)[:100]}) from None
        except httpx.HTTPError as failure:
            raise HospitalLoginRefused("provider_unavailable", {"error": f"token: {type(failure).__name__}"}) from None
        identity = self.verify_id_token(token.get("id_token"), nonce=nonce, access_token=token.get("access_token"),
                                        now=now)
        detail = {"issuer": identity.issuer, "subject": identity.subject}
        with self.gate.authenticator() as connection:
            mapped = connection.execute(
                "SELECT i.role_name FROM kidjamo.clinician_identities AS i JOIN pg_roles AS r ON r.rolname = i.role_name"
                " WHERE i.issuer = %s AND i.subject = %s", (identity.issuer, identity.subject)).fetchone()
            if mapped is None:
                raise HospitalLoginRefused("unknown_identity", detail)
            return self.gate.open_session(connection, mapped[0], client=client, now=now, method="oidc", detail=detail)

    def verify_id_token(self, id_token: str | None, *, nonce: str, access_token: str | None = None,
                        now: datetime) -> VerifiedIdentity:
        """Verify an ID token: signature by the provider's JWKS, issuer, audience, expiry, issue time, nonce."""
        if not id_token:
            raise HospitalLoginRefused("bad_id_token", {"claim": "id_token", "error": "missing"})
        offered = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [name for name in offered if name in SIGNING_ALGORITHMS]
        try:
            try:
                decoded = jwt.decode(id_token, self._key_set(), algorithms=algorithms)
            except InvalidKeyIdError:
                # The provider rotated its keys since they were fetched.
                decoded = jwt.decode(id_token, self._key_set(refresh=True), algorithms=algorithms)
            claims = CodeIDToken(decoded.claims, decoded.header,
                                 {"iss": {"essential": True, "value": self.issuer},
                                  "aud": {"essential": True, "value": self.client_id},
                                  "sub": {"essential": True}, "exp": {"essential": True}},
                                 {"nonce": nonce, "client_id": self.client_id, "access_token": access_token})
            claims.validate(now=int(now.timestamp()), leeway=LEEWAY_SECONDS)
        except JoseError as error:
            raise HospitalLoginRefused("bad_id_token", {"claim": getattr(error, "claim", None),
                                                        "error": error.error}) from None
        if not isinstance(claims["sub"], str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise HospitalLoginRefused("bad_id_token", {"claim": "sub", "error": "invalid_claim"})
        return VerifiedIdentity(self.issuer, claims["sub"])
