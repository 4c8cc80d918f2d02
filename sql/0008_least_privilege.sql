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
