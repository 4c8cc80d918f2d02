-- Clinical alerting (docs/clinical-rules.md): alerts and their events, the readings behind them, notifications
-- with every delivery attempt, personal baselines, and the last reading seen per device.

-- Severity order, for "escalate only upwards" comparisons in SQL.
CREATE FUNCTION kidjamo.severity_rank(severity text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE severity WHEN 'info' THEN 0 WHEN 'warning' THEN 1 WHEN 'high' THEN 2 WHEN 'critical' THEN 3 END
$$;

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
    is_late           boolean NOT NULL DEFAULT false,
    delay_seconds     double precision NOT NULL DEFAULT 0,
    source            text NOT NULL DEFAULT 'batch' CHECK (source IN ('batch', 'fast_path')),
    opened_at         timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    severity_since    timestamptz NOT NULL DEFAULT now(),  -- when the alert reached its current severity (escalation clock)
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    resolved_at       timestamptz,
    resolved_by       text,
    resolution        text
);
-- At most one alert per patient and rule that is not resolved.
CREATE UNIQUE INDEX alerts_one_open_per_rule ON kidjamo.alerts (patient_id, rule_id) WHERE status <> 'resolved';
CREATE INDEX alerts_status_idx ON kidjamo.alerts (status, severity, opened_at);
CREATE INDEX alerts_patient_idx ON kidjamo.alerts (patient_id, opened_at);
COMMENT ON TABLE kidjamo.alerts IS 'One row per alert episode of a patient and rule (rule id and version, evidence, lineage).';
COMMENT ON COLUMN kidjamo.alerts.evidence IS 'Values, thresholds and baseline of the most severe matching reading.';
COMMENT ON COLUMN kidjamo.alerts.lineage IS 'The latest matching readings: raw_file, record_index, device_id, measured_at (all in alert_readings).';
COMMENT ON COLUMN kidjamo.alerts.is_late IS 'The latest matching reading arrived late (measured delay_seconds before its arrival).';

-- Every reading that matched an alert's rule, once: re-running an interval adds nothing.
CREATE TABLE kidjamo.alert_readings (
    patient_id    text NOT NULL,
    rule_id       text NOT NULL,
    device_id     text NOT NULL,
    measured_at   timestamptz NOT NULL,
    alert_id      bigint NOT NULL REFERENCES kidjamo.alerts (alert_id) ON DELETE CASCADE,
    raw_file      text,
    record_index  integer,
    PRIMARY KEY (patient_id, rule_id, device_id, measured_at)
);
CREATE INDEX alert_readings_alert_idx ON kidjamo.alert_readings (alert_id);
COMMENT ON TABLE kidjamo.alert_readings IS 'Lineage of alerts: each matching reading (raw file and record) attached once to one alert.';

-- Life of an alert: opened, escalated, escalation notices, acknowledged, resolved.
-- event_key makes each event happen once (e.g. '42:opened', '42:severity:critical', '42:escalation:1').
CREATE TABLE kidjamo.alert_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES kidjamo.alerts (alert_id) ON DELETE CASCADE,
    event_key   text NOT NULL UNIQUE,
    event_type  text NOT NULL CHECK (event_type IN ('opened', 'escalated', 'escalation_notice', 'acknowledged', 'resolved', 'reopened')),
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'high', 'critical')),
    audience    text NOT NULL DEFAULT 'care_team' CHECK (audience IN ('care_team', 'escalation', 'second_tier')),
    actor       text NOT NULL DEFAULT 'pipeline',
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    run_id      text,
    event_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_alert_idx ON kidjamo.alert_events (alert_id, event_at);
COMMENT ON TABLE kidjamo.alert_events IS 'One row per change in an alert''s life; notifications are sent per event.';

-- One notification per event and channel (the exactly-once key); claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE kidjamo.notifications (
    notification_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         bigint NOT NULL REFERENCES kidjamo.alert_events (event_id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('webhook', 'sns', 'log')),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    sent_at          timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, channel)
);
CREATE INDEX notifications_due_idx ON kidjamo.notifications (next_attempt_at) WHERE status IN ('pending', 'sending');
COMMENT ON TABLE kidjamo.notifications IS 'One row per alert event and channel: sent at most once, retried with backoff on failure.';

CREATE TABLE kidjamo.notification_attempts (
    attempt_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES kidjamo.notifications (notification_id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    outcome          text NOT NULL CHECK (outcome IN ('sent', 'failed')),
    target           text,
    detail           text
);
CREATE INDEX notification_attempts_notification_idx ON kidjamo.notification_attempts (notification_id);
COMMENT ON TABLE kidjamo.notification_attempts IS 'Every delivery attempt of a notification with its outcome.';

-- Personal baselines: median of the last 7 days of readings outside alert episodes (>= 6 h of data).
CREATE TABLE kidjamo.patient_baselines (
    patient_id            text PRIMARY KEY REFERENCES kidjamo.patients (patient_id),
    spo2_baseline         real,
    heart_rate_baseline   real,
    temperature_baseline  real,
    hydration_baseline    real,
    readings              integer NOT NULL,
    hours_of_data         double precision NOT NULL,
    window_start          timestamptz NOT NULL,
    window_end            timestamptz NOT NULL,
    computed_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kidjamo.patient_baselines IS 'Personal vital baselines (median of recent non-alert readings), recomputed on a schedule.';

-- The latest reading seen per device (kept by the alert step): silent-device detection without
-- scanning the measurements.
CREATE TABLE kidjamo.device_last_seen (
    device_id         text PRIMARY KEY,
    patient_id        text NOT NULL,
    last_measured_at  timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);  -- every row is updated each minute: room on the page keeps updates HOT (~2x faster)
CREATE INDEX device_last_seen_patient_idx ON kidjamo.device_last_seen (patient_id);
COMMENT ON TABLE kidjamo.device_last_seen IS 'Latest measured_at per device, for the sensor_silent rule and auto-resolution.';
