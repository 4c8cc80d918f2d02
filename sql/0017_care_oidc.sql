-- The care-team app's optional hospital login (OpenID Connect, docs/care-team.md).
--
-- No self-provisioning: an identity of the hospital's provider opens a session only when
-- `kidjamo clinicians add LOGIN --oidc-subject SUBJECT` mapped it to a clinician login role. The
-- session is then the same database-backed session as a password login (care_sessions, 0013).

-- (issuer, subject) -> clinician login role: OpenID Connect's stable identity of a user is the
-- pair (OIDC Core 1.0 §5.7), never an e-mail address or a name the user could change.
CREATE TABLE kidjamo.clinician_identities (
    issuer      text NOT NULL CHECK (issuer <> ''),
    subject     text NOT NULL CHECK (subject <> '' AND length(subject) <= 255),
    role_name   name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX clinician_identities_role_idx ON kidjamo.clinician_identities (role_name);
COMMENT ON TABLE kidjamo.clinician_identities IS 'Identity-provider subjects (issuer, sub) mapped to clinician login roles of the care-team app.';

-- A login begun at the provider and not yet finished: the hash of its state, the browser that
-- began it (hash of a cookie), its nonce and PKCE verifier. The callback deletes the row it uses,
-- so a state (and with it a code) is good once; rows older than their expiry are refused and swept.
CREATE TABLE kidjamo.care_oidc_logins (
    state_hash     bytea PRIMARY KEY,
    browser_hash   bytea NOT NULL,
    nonce          text NOT NULL,
    code_verifier  text NOT NULL,
    redirect_uri   text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX care_oidc_logins_expiry_idx ON kidjamo.care_oidc_logins (expires_at);
COMMENT ON TABLE kidjamo.care_oidc_logins IS 'Care-team OpenID Connect logins in flight: state hash, browser hash, nonce, PKCE verifier (single use).';

-- How each session was opened (the audit log says it too).
ALTER TABLE kidjamo.care_sessions ADD COLUMN method text NOT NULL DEFAULT 'password'
    CHECK (method IN ('password', 'oidc'));

REVOKE ALL ON kidjamo.clinician_identities, kidjamo.care_oidc_logins FROM PUBLIC, kidjamo_pipeline, kidjamo_clinician;
GRANT SELECT ON kidjamo.clinician_identities TO kidjamo_authenticator;
GRANT SELECT, INSERT, DELETE ON kidjamo.care_oidc_logins TO kidjamo_authenticator;
