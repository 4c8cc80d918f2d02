-- Least privilege that holds (issue 13).
--
-- Care teams: a clinician's teams come from a mapping of login role -> care teams that only the
-- owner writes, looked up by a SECURITY DEFINER function for the role in effect. The session
-- setting kidjamo.care_team (which any session may SET) no longer grants anything.

-- ------------------------------------------------------------------------------------------------
-- The web app's login: it holds no rights of its own (NOINHERIT) and reaches a clinician's rights
-- only through SET ROLE to that clinician's login role, which it is granted by add_clinician.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kidjamo_authenticator') THEN
        BEGIN
            CREATE ROLE kidjamo_authenticator LOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it meanwhile
        END;
    END IF;
END;
$$;

CREATE TABLE kidjamo.care_team_members (
    role_name  name NOT NULL,
    care_team  text NOT NULL CHECK (care_team <> ''),
    PRIMARY KEY (role_name, care_team)
);
COMMENT ON TABLE kidjamo.care_team_members IS 'Which care teams each clinician login role belongs to; written by the owner only (kidjamo clinicians add).';
-- Only the owner reads or writes it: the pipeline's default privileges on new tables do not apply.
REVOKE ALL ON kidjamo.care_team_members FROM PUBLIC, kidjamo_pipeline, kidjamo_clinician;

CREATE FUNCTION kidjamo.care_teams_of(role name) RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT care_team FROM kidjamo.care_team_members WHERE role_name = role
$$;
COMMENT ON FUNCTION kidjamo.care_teams_of(name) IS 'The care teams of a login role (RLS policies call it with current_user: the role in effect, which SET ROLE can only change to a role the login is a member of).';
REVOKE EXECUTE ON FUNCTION kidjamo.care_teams_of(name) FROM PUBLIC, kidjamo_pipeline;
GRANT EXECUTE ON FUNCTION kidjamo.care_teams_of(name) TO kidjamo_clinician;

-- The old policies trusted SET kidjamo.care_team: replace them all.
DROP POLICY clinician_care_team ON kidjamo.patients;
DROP POLICY clinician_care_team ON kidjamo.devices;
DROP POLICY clinician_care_team ON kidjamo.measurements;
DROP POLICY clinician_care_team ON kidjamo.alerts;
DROP FUNCTION kidjamo.session_care_team();

CREATE POLICY clinician_care_team ON kidjamo.patients TO kidjamo_clinician
    USING (care_team IN (SELECT kidjamo.care_teams_of(current_user)));
CREATE POLICY clinician_care_team ON kidjamo.devices TO kidjamo_clinician
    USING (patient_id IN (SELECT patient_id FROM kidjamo.patients
                          WHERE care_team IN (SELECT kidjamo.care_teams_of(current_user))));
CREATE POLICY clinician_care_team ON kidjamo.measurements TO kidjamo_clinician
    USING (patient_id IN (SELECT patient_id FROM kidjamo.patients
                          WHERE care_team IN (SELECT kidjamo.care_teams_of(current_user))));
CREATE POLICY clinician_care_team ON kidjamo.alerts TO kidjamo_clinician
    USING (patient_id IN (SELECT patient_id FROM kidjamo.patients
                          WHERE care_team IN (SELECT kidjamo.care_teams_of(current_user))))
    WITH CHECK (patient_id IN (SELECT patient_id FROM kidjamo.patients
                               WHERE care_team IN (SELECT kidjamo.care_teams_of(current_user))));

-- ------------------------------------------------------------------------------------------------
-- The ingestion service's role: device credentials (nobody else reads them) and the critical fast
-- path (open or update an alert, attach its reading, record its event and notifications).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kidjamo_ingest') THEN
        BEGIN
            CREATE ROLE kidjamo_ingest NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END;
$$;
GRANT USAGE ON SCHEMA kidjamo TO kidjamo_ingest;
GRANT SELECT (patient_id) ON kidjamo.patients TO kidjamo_ingest;
GRANT SELECT (device_id, patient_id, active) ON kidjamo.devices TO kidjamo_ingest;
GRANT SELECT, INSERT, UPDATE ON kidjamo.alerts, kidjamo.alert_readings TO kidjamo_ingest;
GRANT SELECT, INSERT ON kidjamo.alert_events, kidjamo.notifications TO kidjamo_ingest;
GRANT EXECUTE ON FUNCTION kidjamo.severity_rank(text) TO kidjamo_ingest;
CREATE POLICY ingest_fast_path ON kidjamo.patients FOR SELECT TO kidjamo_ingest USING (true);
CREATE POLICY ingest_fast_path ON kidjamo.devices FOR SELECT TO kidjamo_ingest USING (true);
CREATE POLICY ingest_fast_path ON kidjamo.alerts TO kidjamo_ingest USING (true) WITH CHECK (true);

-- ------------------------------------------------------------------------------------------------
-- Device credentials: verifiers that cannot sign. From root = sha256(secret) (what 0005 stored),
-- two keys are derived by HKDF-Expand (RFC 5869, one block: HMAC-SHA256(root, info || 0x01)):
--   api_key_verifier  info 'kidjamo device api-key verifier v1'  compared with the derivation of an X-Api-Key
--   signing_key       info 'kidjamo device request signing v1'   the HMAC key of signed requests
-- Neither yields the other nor the secret; only kidjamo_ingest reads them (not the pipeline).
CREATE FUNCTION pg_temp.hmac_sha256(key bytea, message bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    block bytea := key || decode(repeat('00', 64 - length(key)), 'hex');  -- keys here are 32 bytes
    inner_pad bytea := block;
    outer_pad bytea := block;
BEGIN
    FOR i IN 0..63 LOOP
        inner_pad := set_byte(inner_pad, i, get_byte(block, i) # 54);  -- 0x36
        outer_pad := set_byte(outer_pad, i, get_byte(block, i) # 92);  -- 0x5c
    END LOOP;
    RETURN sha256(outer_pad || sha256(inner_pad || message));
END;
$$;
CREATE FUNCTION pg_temp.derive_key(root_hex text, info text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN root_hex IS NOT NULL
                THEN encode(pg_temp.hmac_sha256(decode(root_hex, 'hex'), convert_to(info, 'UTF8') || '\x01'::bytea), 'hex') END
$$;

ALTER TABLE kidjamo.device_credentials
    ADD COLUMN api_key_verifier text CHECK (api_key_verifier ~ '^[0-9a-f]{64}$'),
    ADD COLUMN signing_key text CHECK (signing_key ~ '^[0-9a-f]{64}$'),
    ADD COLUMN previous_api_key_verifier text CHECK (previous_api_key_verifier ~ '^[0-9a-f]{64}$'),
    ADD COLUMN previous_signing_key text CHECK (previous_signing_key ~ '^[0-9a-f]{64}$');
UPDATE kidjamo.device_credentials SET
    api_key_verifier = pg_temp.derive_key(secret_hash, 'kidjamo device api-key verifier v1'),
    signing_key = pg_temp.derive_key(secret_hash, 'kidjamo device request signing v1'),
    previous_api_key_verifier = pg_temp.derive_key(previous_secret_hash, 'kidjamo device api-key verifier v1'),
    previous_signing_key = pg_temp.derive_key(previous_secret_hash, 'kidjamo device request signing v1');
ALTER TABLE kidjamo.device_credentials
    DROP COLUMN secret_hash,
    DROP COLUMN previous_secret_hash,
    ALTER COLUMN api_key_verifier SET NOT NULL,
    ALTER COLUMN signing_key SET NOT NULL;
DROP FUNCTION pg_temp.derive_key(text, text);
DROP FUNCTION pg_temp.hmac_sha256(bytea, bytea);
COMMENT ON TABLE kidjamo.device_credentials IS 'One row per device allowed to post readings: two keys derived from its secret (never the secret); readable by kidjamo_ingest only.';
COMMENT ON COLUMN kidjamo.device_credentials.api_key_verifier IS 'hex HKDF-Expand(sha256(secret), ''kidjamo device api-key verifier v1''): checks an X-Api-Key, cannot sign';
COMMENT ON COLUMN kidjamo.device_credentials.signing_key IS 'hex HKDF-Expand(sha256(secret), ''kidjamo device request signing v1''): HMAC key of X-Signature';
REVOKE ALL ON kidjamo.device_credentials FROM PUBLIC, kidjamo_pipeline, kidjamo_clinician, kidjamo_analyst;
GRANT SELECT ON kidjamo.device_credentials TO kidjamo_ingest;

-- Every instance of the service learns of a change at once (LISTEN kidjamo_device_credentials):
-- a revocation, erasure, rotation or deactivation takes effect before the next request is checked.
CREATE FUNCTION kidjamo.notify_device_credential_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('kidjamo_device_credentials', coalesce(NEW.device_id, OLD.device_id));
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION kidjamo.notify_device_credential_change() FROM PUBLIC;
CREATE TRIGGER device_credentials_notify AFTER INSERT OR UPDATE OR DELETE ON kidjamo.device_credentials
    FOR EACH ROW EXECUTE FUNCTION kidjamo.notify_device_credential_change();
CREATE TRIGGER devices_notify AFTER UPDATE OF active, patient_id OR DELETE ON kidjamo.devices
    FOR EACH ROW EXECUTE FUNCTION kidjamo.notify_device_credential_change();

-- ------------------------------------------------------------------------------------------------
-- Audit: the actor is the login (session_user), which a session cannot change; what a session
-- claims about the person behind it is kept apart, as on_behalf_of (settings kidjamo.on_behalf_of,
-- or the former kidjamo.actor). Events may be recorded only by the roles that perform them.
ALTER TABLE kidjamo.audit_log ADD COLUMN on_behalf_of text;
COMMENT ON COLUMN kidjamo.audit_log.actor IS 'The login role of the session (session_user): cannot be set by the session.';
COMMENT ON COLUMN kidjamo.audit_log.on_behalf_of IS 'Free text the session claims (the person behind a shared login, e.g. the web app''s clinician); not proven.';

CREATE FUNCTION kidjamo.audit_on_behalf_of() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('kidjamo.on_behalf_of', true), ''), nullif(current_setting('kidjamo.actor', true), ''))
$$;

CREATE OR REPLACE FUNCTION kidjamo.audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    before_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
    after_row jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
    current_row jsonb := coalesce(after_row, before_row);
    key jsonb := '{}'::jsonb;
    key_column text;
BEGIN
    IF TG_OP = 'UPDATE' AND before_row = after_row THEN
        RETURN NULL;
    END IF;
    FOREACH key_column IN ARRAY TG_ARGV LOOP
        key := key || jsonb_build_object(key_column, current_row -> key_column);
    END LOOP;
    INSERT INTO kidjamo.audit_log (acting_role, actor, on_behalf_of, application, action, table_name, row_key, patient_id, before, after)
    VALUES (kidjamo.audit_acting_role(), session_user, kidjamo.audit_on_behalf_of(),
            nullif(current_setting('application_name', true), ''), TG_OP, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            key, current_row ->> 'patient_id', before_row, after_row);
    RETURN NULL;
END;
$$;

-- Which role may record which event; the owner of schema kidjamo (migrations, operators' CLI)
-- may record any. Later migrations add rows for the events their components perform.
CREATE TABLE kidjamo.audit_event_roles (
    action     text NOT NULL,
    role_name  name NOT NULL,
    PRIMARY KEY (action, role_name)
);
COMMENT ON TABLE kidjamo.audit_event_roles IS 'The roles allowed to record each audit event through kidjamo.record_audit_event (besides the owner).';
REVOKE ALL ON kidjamo.audit_event_roles FROM PUBLIC, kidjamo_pipeline, kidjamo_clinician, kidjamo_ingest;
INSERT INTO kidjamo.audit_event_roles (action, role_name) VALUES
    ('registry_import', 'kidjamo_pipeline'),
    ('retention', 'kidjamo_pipeline');

DROP FUNCTION kidjamo.record_audit_event(text, jsonb, text);
CREATE FUNCTION kidjamo.record_audit_event(action text, detail jsonb, patient_id text DEFAULT NULL, on_behalf_of text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    acting name := kidjamo.audit_acting_role();
    new_id bigint;
BEGIN
    IF NOT pg_has_role(session_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'kidjamo'), 'MEMBER')
       AND NOT EXISTS (SELECT 1 FROM kidjamo.audit_event_roles AS r
                       WHERE r.action = record_audit_event.action AND pg_has_role(acting, r.role_name, 'USAGE')) THEN
        RAISE EXCEPTION 'role % may not record audit event %', acting, action USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO kidjamo.audit_log (acting_role, actor, on_behalf_of, application, action, patient_id, detail)
    VALUES (acting, session_user, coalesce(record_audit_event.on_behalf_of, kidjamo.audit_on_behalf_of()),
            nullif(current_setting('application_name', true), ''), action, patient_id, detail)
    RETURNING audit_id INTO new_id;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION kidjamo.record_audit_event(text, jsonb, text, text) IS 'Append one event to kidjamo.audit_log as session_user; allowed to the owner and to the roles of kidjamo.audit_event_roles for that action.';
REVOKE EXECUTE ON FUNCTION kidjamo.record_audit_event(text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kidjamo.record_audit_event(text, jsonb, text, text) TO kidjamo_pipeline, kidjamo_ingest, kidjamo_clinician;
REVOKE EXECUTE ON FUNCTION kidjamo.audit_on_behalf_of() FROM PUBLIC;

-- The redaction exception must also keep on_behalf_of unchanged.
CREATE OR REPLACE FUNCTION kidjamo.forbid_audit_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('kidjamo.audit_redaction', true) = 'on'
       AND NEW.before IS NULL AND NEW.after IS NULL AND NEW.redacted_at IS NOT NULL
       AND (NEW.audit_id, NEW.occurred_at, NEW.transaction_id, NEW.login_role, NEW.acting_role, NEW.actor, NEW.on_behalf_of,
            NEW.application, NEW.action, NEW.table_name, NEW.row_key, NEW.patient_id, NEW.detail)
           IS NOT DISTINCT FROM
           (OLD.audit_id, OLD.occurred_at, OLD.transaction_id, OLD.login_role, OLD.acting_role, OLD.actor, OLD.on_behalf_of,
            OLD.application, OLD.action, OLD.table_name, OLD.row_key, OLD.patient_id, OLD.detail) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'kidjamo.audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- ------------------------------------------------------------------------------------------------
-- Retention: never a partition younger than the retention minimum (readings are accepted up to 7
-- days late, so a younger partition can still receive acknowledged readings), and every drop audited.
CREATE FUNCTION kidjamo.retention_minimum_days() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$;
COMMENT ON FUNCTION kidjamo.retention_minimum_days() IS 'The youngest data a retention may drop is this many days before today (the lateness window).';
GRANT EXECUTE ON FUNCTION kidjamo.retention_minimum_days() TO kidjamo_pipeline;

CREATE OR REPLACE FUNCTION kidjamo.drop_measurement_partitions_before(cutoff date)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    latest_allowed date := (now() AT TIME ZONE 'UTC')::date - kidjamo.retention_minimum_days();
    partition record;
    dropped text[] := '{}';
BEGIN
    IF cutoff IS NULL OR cutoff > latest_allowed THEN
        RAISE EXCEPTION 'retention cutoff % refused: it must be on or before % (today minus the retention minimum of % days)',
            cutoff, latest_allowed, kidjamo.retention_minimum_days() USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR partition IN
        SELECT child.relname, child.reltuples
        FROM pg_inherits
        JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = 'kidjamo.measurements'::regclass
          AND child.relname ~ '^measurements_[0-9]{8}$'
          AND to_date(substr(child.relname, 14), 'YYYYMMDD') + 1 <= cutoff
        ORDER BY child.relname
    LOOP
        EXECUTE format('DROP TABLE kidjamo.%I', partition.relname);
        dropped := dropped || ('kidjamo.' || partition.relname);
        INSERT INTO kidjamo.audit_log (acting_role, actor, on_behalf_of, application, action, table_name, detail)
        VALUES (kidjamo.audit_acting_role(), session_user, kidjamo.audit_on_behalf_of(),
                nullif(current_setting('application_name', true), ''), 'partition_dropped', 'kidjamo.' || partition.relname,
                jsonb_build_object('cutoff', cutoff, 'estimated_rows', greatest(partition.reltuples, 0)::bigint));
    END LOOP;
    RETURN dropped;
END;
$$;

-- ------------------------------------------------------------------------------------------------
-- Erasure (RGPD art. 17): no byte of the patient's identifiers may remain, in the audit log either.
-- The audit rows stay (who did what when), with the identifiers replaced by a reference (the
-- patient's pseudonym) and the before/after images blanked. Only the owner may run it.
CREATE OR REPLACE FUNCTION kidjamo.forbid_audit_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('kidjamo.audit_redaction', true) = 'on' AND NEW.redacted_at IS NOT NULL
       AND (NEW.audit_id, NEW.occurred_at, NEW.transaction_id, NEW.login_role, NEW.acting_role, NEW.actor, NEW.on_behalf_of,
            NEW.application, NEW.action, NEW.table_name)
           IS NOT DISTINCT FROM
           (OLD.audit_id, OLD.occurred_at, OLD.transaction_id, OLD.login_role, OLD.acting_role, OLD.actor, OLD.on_behalf_of,
            OLD.application, OLD.action, OLD.table_name) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'kidjamo.audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE FUNCTION kidjamo.erase_identifiers_from_audit(pattern text, reference text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    redacted integer;
BEGIN
    PERFORM set_config('kidjamo.audit_redaction', 'on', true);
    UPDATE kidjamo.audit_log SET
        before = CASE WHEN coalesce(patient_id ~ pattern OR before::text ~ pattern OR after::text ~ pattern, false) THEN NULL ELSE before END,
        after = CASE WHEN coalesce(patient_id ~ pattern OR before::text ~ pattern OR after::text ~ pattern, false) THEN NULL ELSE after END,
        patient_id = regexp_replace(patient_id, pattern, reference, 'g'),
        row_key = CASE WHEN row_key::text ~ pattern THEN regexp_replace(row_key::text, pattern, reference, 'g')::jsonb ELSE row_key END,
        detail = CASE WHEN detail::text ~ pattern THEN regexp_replace(detail::text, pattern, reference, 'g')::jsonb ELSE detail END,
        redacted_at = coalesce(redacted_at, clock_timestamp())
    WHERE patient_id ~ pattern OR before::text ~ pattern OR after::text ~ pattern OR row_key::text ~ pattern OR detail::text ~ pattern;
    GET DIAGNOSTICS redacted = ROW_COUNT;
    PERFORM set_config('kidjamo.audit_redaction', 'off', true);
    RETURN redacted;
END;
$$;
COMMENT ON FUNCTION kidjamo.erase_identifiers_from_audit(text, text) IS 'Erasure: replace every match of pattern (the patient''s identifiers) in the audit log by reference and blank the images of those rows.';
REVOKE EXECUTE ON FUNCTION kidjamo.erase_identifiers_from_audit(text, text) FROM PUBLIC, kidjamo_pipeline;
