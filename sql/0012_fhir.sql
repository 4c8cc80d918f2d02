-- FHIR read access for care systems (docs/fhir.md): one bearer token per care system, stored hashed,
-- limited to the patients of the care teams it serves. Managed by `kidjamo fhir clients`.
CREATE TABLE IF NOT EXISTS kidjamo.fhir_clients (
    client_id     text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    description   text,
    token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    care_teams    text[] NOT NULL CHECK (cardinality(care_teams) > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
COMMENT ON TABLE kidjamo.fhir_clients IS 'Care systems allowed to read FHIR (GET /fhir/...): sha256 of their bearer token, and the care teams whose patients they may read.';
COMMENT ON COLUMN kidjamo.fhir_clients.token_hash IS 'sha256 hex of the bearer token (the token itself is shown once, never stored)';
COMMENT ON COLUMN kidjamo.fhir_clients.care_teams IS 'the client reads only patients whose kidjamo.patients.care_team is listed';
COMMENT ON COLUMN kidjamo.fhir_clients.revoked_at IS 'set by kidjamo fhir clients revoke: the token gets 401 from then on';

DROP TRIGGER IF EXISTS fhir_clients_audit ON kidjamo.fhir_clients;
CREATE TRIGGER fhir_clients_audit AFTER INSERT OR UPDATE OF token_hash, care_teams, revoked_at OR DELETE ON kidjamo.fhir_clients
    FOR EACH ROW EXECUTE FUNCTION kidjamo.audit_row_change('client_id');

GRANT SELECT, INSERT, UPDATE, DELETE ON kidjamo.fhir_clients TO kidjamo_pipeline;
