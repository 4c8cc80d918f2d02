-- Roles, grants, row-level security and the append-only audit log.
--
-- Roles are cluster-wide and NOLOGIN: a deployment grants them to its login users
-- (GRANT kidjamo_clinician TO alice). They are created only when missing, so several databases on
-- one server can each run this migration.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['kidjamo_pipeline', 'kidjamo_analyst', 'kidjamo_clinician'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it meanwhile
            END;
        END IF;
    END LOOP;
END;
$$;

-- ------------------------------------------------------------------------------------------------
-- Audit log: who (login role, acting role, kidjamo.actor), when, what, before and after.
CREATE TABLE kidjamo.audit_log (
    audit_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    transaction_id  bigint NOT NULL DEFAULT txid_current(),
    login_role      text NOT NULL DEFAULT session_user,
    acting_role     text NOT NULL,
    actor           text,
    application     text,
    action          text NOT NULL,
    table_name      text,
    row_key         jsonb,
    patient_id      text,
    before          jsonb,
    after           jsonb,
    detail          jsonb,
    redacted_at     timestamptz
);
CREATE INDEX audit_log_patient_idx ON kidjamo.audit_log (patient_id) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_log_time_idx ON kidjamo.audit_log (occurred_at);
COMMENT ON TABLE kidjamo.audit_log IS 'One row per audited change (patients, devices, alerts, pipeline runs) or event (registry import, erasure); append-only.';
COMMENT ON COLUMN kidjamo.audit_log.acting_role IS 'The role in effect (SET ROLE), else the login role.';
COMMENT ON COLUMN kidjamo.audit_log.actor IS 'The person or process behind the connection: session setting kidjamo.actor.';
COMMENT ON COLUMN kidjamo.audit_log.redacted_at IS 'When before/after were blanked by the erasure of the patient (the rest of the row stays).';

CREATE FUNCTION kidjamo.audit_acting_role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('role') IN ('none', '') THEN session_user::text ELSE current_setting('role') END
$$;

CREATE FUNCTION kidjamo.audit_row_change() RETURNS trigger
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
    INSERT INTO kidjamo.audit_log (acting_role, actor, application, action, table_name, row_key, patient_id, before, after)
    VALUES (kidjamo.audit_acting_role(), nullif(current_setting('kidjamo.actor', true), ''),
            nullif(current_setting('application_name', true), ''), TG_OP, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            key, current_row ->> 'patient_id', before_row, after_row);
    RETURN NULL;
END;
$$;

CREATE TRIGGER patients_audit AFTER INSERT OR UPDATE OR DELETE ON kidjamo.patients
    FOR EACH ROW EXECUTE FUNCTION kidjamo.audit_row_change('patient_id');
CREATE TRIGGER devices_audit AFTER INSERT OR UPDATE OR DELETE ON kidjamo.devices
    FOR EACH ROW EXECUTE FUNCTION kidjamo.audit_row_change('device_id');
CREATE TRIGGER alerts_audit AFTER INSERT OR UPDATE OR DELETE ON kidjamo.alerts
    FOR EACH ROW EXECUTE FUNCTION kidjamo.audit_row_change('alert_id');
CREATE TRIGGER pipeline_runs_audit AFTER INSERT OR UPDATE OR DELETE ON kidjamo.pipeline_runs
    FOR EACH ROW EXECUTE FUNCTION kidjamo.audit_row_change('run_id', 'step');

CREATE FUNCTION kidjamo.record_audit_event(action text, detail jsonb, patient_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO kidjamo.audit_log (acting_role, actor, application, action, patient_id, detail)
    VALUES (kidjamo.audit_acting_role(), nullif(current_setting('kidjamo.actor', true), ''),
            nullif(current_setting('application_name', true), ''), action, patient_id, detail)
    RETURNING audit_id INTO new_id;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION kidjamo.record_audit_event(text, jsonb, text) IS 'Append one event (registry import, export, erasure, retention) to kidjamo.audit_log.';

-- Append-only: no UPDATE, DELETE or TRUNCATE, whoever asks. The only rewrite allowed is the
-- erasure's redaction (kidjamo.redact_patient_audit), which blanks before/after and nothing else.
CREATE FUNCTION kidjamo.forbid_audit_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('kidjamo.audit_redaction', true) = 'on'
       AND NEW.before IS NULL AND NEW.after IS NULL AND NEW.redacted_at IS NOT NULL
       AND (NEW.audit_id, NEW.occurred_at, NEW.transaction_id, NEW.login_role, NEW.acting_role, NEW.actor,
            NEW.application, NEW.action, NEW.table_name, NEW.row_key, NEW.patient_id, NEW.detail)
           IS NOT DISTINCT FROM
           (OLD.audit_id, OLD.occurred_at, OLD.transaction_id, OLD.login_role, OLD.acting_role, OLD.actor,
            OLD.application, OLD.action, OLD.table_name, OLD.row_key, OLD.patient_id, OLD.detail) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'kidjamo.audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON kidjamo.audit_log
    FOR EACH ROW EXECUTE FUNCTION kidjamo.forbid_audit_rewrite();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON kidjamo.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.forbid_audit_rewrite();

CREATE FUNCTION kidjamo.redact_patient_audit(erased_patient_id text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    redacted integer;
BEGIN
    PERFORM set_config('kidjamo.audit_redaction', 'on', true);
    UPDATE kidjamo.audit_log SET before = NULL, after = NULL, redacted_at = clock_timestamp()
    WHERE patient_id = erased_patient_id AND redacted_at IS NULL AND (before IS NOT NULL OR after IS NOT NULL);
    GET DIAGNOSTICS redacted = ROW_COUNT;
    PERFORM set_config('kidjamo.audit_redaction', 'off', true);
    RETURN redacted;
END;
$$;
COMMENT ON FUNCTION kidjamo.redact_patient_audit(text) IS 'Erasure: blank the before/after images of the audit rows of one patient (who/when/what stay).';

-- ------------------------------------------------------------------------------------------------
-- Grants. Nothing for PUBLIC; each role gets exactly what its job needs.
REVOKE ALL ON SCHEMA kidjamo FROM PUBLIC;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA kidjamo FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA kidjamo FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA kidjamo REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The pipeline writes every operational table, except the audit log (only through the triggers
-- and kidjamo.record_audit_event), and reads the analytics it refreshes.
GRANT USAGE ON SCHEMA kidjamo, analytics TO kidjamo_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA kidjamo TO kidjamo_pipeline;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA kidjamo TO kidjamo_pipeline;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA kidjamo TO kidjamo_pipeline;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO kidjamo_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA kidjamo GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO kidjamo_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA kidjamo GRANT USAGE, SELECT ON SEQUENCES TO kidjamo_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA kidjamo GRANT EXECUTE ON FUNCTIONS TO kidjamo_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO kidjamo_pipeline;
REVOKE ALL ON kidjamo.audit_log FROM kidjamo_pipeline;
REVOKE EXECUTE ON FUNCTION kidjamo.redact_patient_audit(text) FROM kidjamo_pipeline;

-- The analyst reads schema analytics and nothing else.
GRANT USAGE ON SCHEMA analytics TO kidjamo_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO kidjamo_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO kidjamo_analyst;

-- The clinician reads the patients of their care team and may acknowledge their alerts.
GRANT USAGE ON SCHEMA kidjamo TO kidjamo_clinician;
GRANT SELECT ON kidjamo.patients, kidjamo.devices, kidjamo.measurements, kidjamo.alerts TO kidjamo_clinician;
GRANT UPDATE (status, updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, resolution) ON kidjamo.alerts TO kidjamo_clinician;

-- ------------------------------------------------------------------------------------------------
-- Row-level security: a clinician session declares its team with SET kidjamo.care_team = 'team-a'
-- (the login role's default can pin it: ALTER ROLE alice SET kidjamo.care_team = 'team-a').
-- Without the setting a clinician sees nothing.
CREATE FUNCTION kidjamo.session_care_team() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('kidjamo.care_team', true), '') $$;
GRANT EXECUTE ON FUNCTION kidjamo.session_care_team() TO kidjamo_clinician;

ALTER TABLE kidjamo.patients ENABLE ROW LEVEL SECURITY;
ALTER TABLE kidjamo.devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE kidjamo.measurements ENABLE ROW LEVEL SECURITY;
ALTER TABLE kidjamo.alerts ENABLE ROW LEVEL SECURITY;

CREATE POLICY pipeline_all ON kidjamo.patients TO kidjamo_pipeline USING (true) WITH CHECK (true);
CREATE POLICY pipeline_all ON kidjamo.devices TO kidjamo_pipeline USING (true) WITH CHECK (true);
CREATE POLICY pipeline_all ON kidjamo.measurements TO kidjamo_pipeline USING (true) WITH CHECK (true);
CREATE POLICY pipeline_all ON kidjamo.alerts TO kidjamo_pipeline USING (true) WITH CHECK (true);

CREATE POLICY clinician_care_team ON kidjamo.patients TO kidjamo_clinician
    USING (care_team = kidjamo.session_care_team());
CREATE POLICY clinician_care_team ON kidjamo.devices TO kidjamo_clinician
    USING (patient_id IN (SELECT patient_id FROM kidjamo.patients WHERE care_team = kidjamo.session_care_team()));
CREATE POLICY clinician_care_team ON kidjamo.measurements TO kidjamo_clinician
    USING (patient_id IN (SELECT patient_id FROM kidjamo.patients WHERE care_team = kidjamo.session_care_team()));
CREATE POLICY clinician_care_team ON kidjamo.alerts TO kidjamo_clinician
    USING (patient_id IN (SELECT patient_id FROM kidjamo.patients WHERE care_team = kidjamo.session_care_team()))
    WITH CHECK (patient_id IN (SELECT patient_id FROM kidjamo.patients WHERE care_team = kidjamo.session_care_team()));
