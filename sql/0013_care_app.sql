-- The care team's web app (care/, `kidjamo care serve`).
--
-- The app logs in as kidjamo_authenticator (0008: NOINHERIT, no rights of its own) and answers each
-- request as the clinician it serves (SET ROLE), so row-level security decides what a page shows
-- and what an action may change. Before SET ROLE, the authenticator may only read web password
-- hashes, keep sessions and count login attempts (the tables below); after it, only the clinician's
-- rights apply.

-- ------------------------------------------------------------------------------------------------
-- Web logins: an argon2id hash per clinician login role (written by `kidjamo clinicians add`).
CREATE TABLE kidjamo.clinician_credentials (
    role_name      name PRIMARY KEY,
    password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kidjamo.clinician_credentials IS 'Web password (argon2id hash) of each clinician login role of the care-team app.';

-- Server-side sessions: the cookie holds a random token, the table its SHA-256 (a stolen table
-- cannot be replayed as cookies); logging out deletes the row, so a copied cookie dies with it.
CREATE TABLE kidjamo.care_sessions (
    session_hash  bytea PRIMARY KEY,
    role_name     name NOT NULL,
    csrf_token    text NOT NULL,
    client        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX care_sessions_expiry_idx ON kidjamo.care_sessions (expires_at);
COMMENT ON TABLE kidjamo.care_sessions IS 'Care-team app sessions: SHA-256 of the session cookie, clinician login, CSRF token, expiry.';

CREATE TABLE kidjamo.care_login_attempts (
    attempt_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login         text NOT NULL,
    client        text,
    attempted_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    succeeded     boolean NOT NULL
);
CREATE INDEX care_login_attempts_login_idx ON kidjamo.care_login_attempts (login, attempted_at);
CREATE INDEX care_login_attempts_client_idx ON kidjamo.care_login_attempts (client, attempted_at);
COMMENT ON TABLE kidjamo.care_login_attempts IS 'Every login attempt of the care-team app (rate limit per login and per client address).';

-- Only the owner and the authenticator: the pipeline's default privileges on new tables do not apply.
REVOKE ALL ON kidjamo.clinician_credentials, kidjamo.care_sessions, kidjamo.care_login_attempts
    FROM PUBLIC, kidjamo_pipeline, kidjamo_clinician;
GRANT SELECT ON kidjamo.clinician_credentials TO kidjamo_authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON kidjamo.care_sessions TO kidjamo_authenticator;
GRANT SELECT, INSERT, DELETE ON kidjamo.care_login_attempts TO kidjamo_authenticator;
GRANT USAGE ON SCHEMA kidjamo TO kidjamo_authenticator;

-- A denied request (another team's patient, unknown id, forged form, second acknowledgement, failed
-- login) leaves an audit row. The acting role is the clinician after SET ROLE, else the
-- authenticator; only care_* actions can be recorded this way.
CREATE FUNCTION kidjamo.record_care_access(action text, detail jsonb, patient_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    IF action NOT LIKE 'care\_%' THEN
        RAISE EXCEPTION 'record_care_access records care_* actions only, not %', action
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO kidjamo.audit_log (acting_role, actor, application, action, patient_id, detail)
    VALUES (kidjamo.audit_acting_role(), kidjamo.audit_acting_role(),
            nullif(current_setting('application_name', true), ''), action, patient_id, detail)
    RETURNING audit_id INTO new_id;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION kidjamo.record_care_access(text, jsonb, text) IS 'Audit a care-team app access or denial (care_* actions); the actor is the role in effect.';
REVOKE EXECUTE ON FUNCTION kidjamo.record_care_access(text, jsonb, text) FROM PUBLIC, kidjamo_pipeline;
GRANT EXECUTE ON FUNCTION kidjamo.record_care_access(text, jsonb, text) TO kidjamo_authenticator, kidjamo_clinician;

-- ------------------------------------------------------------------------------------------------
-- What a clinician reads beyond 0006/0008, filtered to their care teams. Views run as their owner
-- but current_user inside them is the clinician: security_barrier keeps a clinician's own
-- functions from seeing rows before the team filter.
CREATE VIEW kidjamo.care_device_state WITH (security_barrier) AS
SELECT s.device_id, s.patient_id, s.last_measured_at, s.last_arrival_minute, s.battery_level, s.signal_quality,
       s.low_battery, s.weak_signal, s.firmware_version
FROM kidjamo.device_status AS s
WHERE s.patient_id IN (SELECT patient_id FROM kidjamo.patients
                       WHERE care_team IN (SELECT kidjamo.care_teams_of(current_user)));
COMMENT ON VIEW kidjamo.care_device_state IS 'Latest state (last reading, battery, signal) of the devices of the clinician''s care teams.';

-- Quarantined readings of the team's patients, by the device that sent them (no original text).
CREATE VIEW kidjamo.care_quarantine WITH (security_barrier) AS
SELECT d.patient_id, q.device_id, q.layer, q.reason, q.field, q.detail, q.measured_at, q.arrival_minute
FROM kidjamo.quarantine AS q
JOIN kidjamo.devices AS d ON d.device_id = q.device_id
WHERE d.patient_id IN (SELECT patient_id FROM kidjamo.patients
                       WHERE care_team IN (SELECT kidjamo.care_teams_of(current_user)));
COMMENT ON VIEW kidjamo.care_quarantine IS 'Quarantined readings of the devices of the clinician''s care teams (reason, field, detail).';
CREATE INDEX quarantine_device_arrival_idx ON kidjamo.quarantine (device_id, arrival_minute);

REVOKE ALL ON kidjamo.care_device_state, kidjamo.care_quarantine FROM PUBLIC, kidjamo_pipeline;
-- Pages sort alerts by severity like the CLI does.
GRANT EXECUTE ON FUNCTION kidjamo.severity_rank(text) TO kidjamo_clinician;
GRANT SELECT ON kidjamo.care_device_state, kidjamo.care_quarantine TO kidjamo_clinician;

-- ------------------------------------------------------------------------------------------------
-- A clinician's actions write the alert's events (acknowledged, resolved, escalation notice) and,
-- for an escalation, its notifications: the same functions as `kidjamo alerts`, run as the
-- clinician. Row-level security limits those rows to the alerts the clinician can see, in their
-- own name; every other role keeps the access its grants give (the second policy).
GRANT SELECT, INSERT ON kidjamo.alert_events TO kidjamo_clinician;
-- SELECT on the key columns: ON CONFLICT (event_id, channel) infers the index from them (RLS shows no row).
GRANT INSERT, SELECT (event_id, channel) ON kidjamo.notifications TO kidjamo_clinician;

ALTER TABLE kidjamo.alert_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_a_clinician ON kidjamo.alert_events
    USING (NOT pg_has_role('kidjamo_clinician', 'MEMBER')) WITH CHECK (NOT pg_has_role('kidjamo_clinician', 'MEMBER'));
CREATE POLICY clinician_care_team_read ON kidjamo.alert_events FOR SELECT TO kidjamo_clinician
    USING (alert_id IN (SELECT alert_id FROM kidjamo.alerts));
CREATE POLICY clinician_care_team_write ON kidjamo.alert_events FOR INSERT TO kidjamo_clinician
    WITH CHECK (alert_id IN (SELECT alert_id FROM kidjamo.alerts) AND actor = current_user::text
                AND event_type IN ('acknowledged', 'resolved', 'escalation_notice'));

ALTER TABLE kidjamo.notifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_a_clinician ON kidjamo.notifications
    USING (NOT pg_has_role('kidjamo_clinician', 'MEMBER')) WITH CHECK (NOT pg_has_role('kidjamo_clinician', 'MEMBER'));
CREATE POLICY clinician_care_team_write ON kidjamo.notifications FOR INSERT TO kidjamo_clinician
    WITH CHECK (event_id IN (SELECT event_id FROM kidjamo.alert_events));
-- INSERT ... ON CONFLICT checks the new row against the SELECT policies too.
CREATE POLICY clinician_care_team_read ON kidjamo.notifications FOR SELECT TO kidjamo_clinician
    USING (event_id IN (SELECT event_id FROM kidjamo.alert_events));
