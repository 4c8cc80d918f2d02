-- Alerts raised by the clinical rules (CLINICAL.md); one open alert per patient and rule.
CREATE TABLE kidjamo.alerts (
    alert_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id        text NOT NULL REFERENCES kidjamo.patients (patient_id),
    rule_id           text NOT NULL,
    rule_version      text NOT NULL,
    severity          text NOT NULL CHECK (severity IN ('info', 'warning', 'high', 'critical')),
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_reading_at  timestamptz NOT NULL,
    last_reading_at   timestamptz NOT NULL,
    reading_count     integer NOT NULL DEFAULT 1 CHECK (reading_count > 0),
    evidence          jsonb NOT NULL,
    lineage           jsonb NOT NULL DEFAULT '[]'::jsonb,
    opened_at         timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- At most one alert per patient and rule that is not resolved.
CREATE UNIQUE INDEX alerts_one_open_per_rule ON kidjamo.alerts (patient_id, rule_id) WHERE status <> 'resolved';
COMMENT ON TABLE kidjamo.alerts IS 'One row per alert episode of a patient and rule.';
