-- The analytics schema: incremental rollups (kept in schema kidjamo, identified, maintained by the
-- loads and triggers) and the pseudonymized views analysts query (schema analytics).
--
-- Refresh cost does not grow with history: loads recompute only the (patient, hour) rows their batch
-- touched, triggers keep the daily data-quality counts, and the materialized views read those small
-- rollups, never kidjamo.measurements. The per-minute refresh covers device_health and
-- data_quality_daily (bounded by fleet size and days x reasons); vitals_hourly and patient_daily
-- (patients x hours/days of history) refresh on the maintenance schedule (transforms/load.py
-- refresh_views(heavy=True)).

-- Pseudonyms: a keyed hash (HMAC-SHA256, computed by kidjamo.privacy with the KIDJAMO_PSEUDONYM_KEY
-- setting, never stored in the database) per patient and device.
CREATE TABLE kidjamo.pseudonyms (
    subject     text NOT NULL CHECK (subject IN ('patient', 'device')),
    identifier  text NOT NULL,
    pseudonym   text NOT NULL UNIQUE CHECK (pseudonym ~ '^[0-9a-f]{32}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, identifier)
);
COMMENT ON TABLE kidjamo.pseudonyms IS 'One row per patient or device: its keyed-hash pseudonym used as the key in schema analytics.';

-- Hourly rollup of the vitals, recomputed by each load for the (patient, hour) pairs it inserted into.
CREATE TABLE kidjamo.vitals_hourly_rollup (
    patient_id  text NOT NULL,
    hour        timestamptz NOT NULL,
    readings    integer NOT NULL CHECK (readings > 0),
    spo2_min real, spo2_max real, spo2_mean real, spo2_p50 real,
    heart_rate_min real, heart_rate_max real, heart_rate_mean real, heart_rate_p50 real,
    temperature_min real, temperature_max real, temperature_mean real, temperature_p50 real,
    respiratory_rate_min real, respiratory_rate_max real, respiratory_rate_mean real, respiratory_rate_p50 real,
    hydration_pct_min real, hydration_pct_max real, hydration_pct_mean real, hydration_pct_p50 real,
    ambient_temp_min real, ambient_temp_max real, ambient_temp_mean real, ambient_temp_p50 real,
    activity_level_min real, activity_level_max real, activity_level_mean real, activity_level_p50 real,
    pain_scale_min real, pain_scale_max real, pain_scale_mean real, pain_scale_p50 real,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, hour)
);
CREATE INDEX vitals_hourly_rollup_hour_idx ON kidjamo.vitals_hourly_rollup (hour);
COMMENT ON TABLE kidjamo.vitals_hourly_rollup IS 'One row per patient and UTC hour of measured_at: min, max, mean and median of each vital.';

CREATE FUNCTION kidjamo.recompute_vitals_hourly(patient_ids text[], hours timestamptz[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    recomputed integer;
    first_hour timestamptz;
    last_hour timestamptz;
BEGIN
    -- Constant bounds let the planner prune the partitions outside the batch's hours, so the
    -- planning cost does not grow with the number of partitions kept.
    SELECT min(h), max(h) INTO first_hour, last_hour FROM unnest(hours) AS h;
    IF first_hour IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO kidjamo.vitals_hourly_rollup AS r (
        patient_id, hour, readings,
        spo2_min, spo2_max, spo2_mean, spo2_p50,
        heart_rate_min, heart_rate_max, heart_rate_mean, heart_rate_p50,
        temperature_min, temperature_max, temperature_mean, temperature_p50,
        respiratory_rate_min, respiratory_rate_max, respiratory_rate_mean, respiratory_rate_p50,
        hydration_pct_min, hydration_pct_max, hydration_pct_mean, hydration_pct_p50,
        ambient_temp_min, ambient_temp_max, ambient_temp_mean, ambient_temp_p50,
        activity_level_min, activity_level_max, activity_level_mean, activity_level_p50,
        pain_scale_min, pain_scale_max, pain_scale_mean, pain_scale_p50)
    SELECT
        m.patient_id, t.hour, count(*),
        min(m.spo2), max(m.spo2), avg(m.spo2)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.spo2))::real,
        min(m.heart_rate), max(m.heart_rate), avg(m.heart_rate)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.heart_rate))::real,
        min(m.temperature), max(m.temperature), avg(m.temperature)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.temperature))::real,
        min(m.respiratory_rate), max(m.respiratory_rate), avg(m.respiratory_rate)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.respiratory_rate))::real,
        min(m.hydration_pct), max(m.hydration_pct), avg(m.hydration_pct)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.hydration_pct))::real,
        min(m.ambient_temp), max(m.ambient_temp), avg(m.ambient_temp)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.ambient_temp))::real,
        min(m.activity_level), max(m.activity_level), avg(m.activity_level)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.activity_level))::real,
        min(m.pain_scale), max(m.pain_scale), avg(m.pain_scale)::real, (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.pain_scale))::real
    FROM unnest(patient_ids, hours) AS t (patient_id, hour)
    JOIN kidjamo.measurements AS m
      ON m.patient_id = t.patient_id AND m.measured_at >= t.hour AND m.measured_at < t.hour + interval '1 hour'
    WHERE m.measured_at >= first_hour AND m.measured_at < last_hour + interval '1 hour'
    GROUP BY m.patient_id, t.hour
    ON CONFLICT (patient_id, hour) DO UPDATE SET
        readings = excluded.readings,
        spo2_min = excluded.spo2_min, spo2_max = excluded.spo2_max, spo2_mean = excluded.spo2_mean, spo2_p50 = excluded.spo2_p50,
        heart_rate_min = excluded.heart_rate_min, heart_rate_max = excluded.heart_rate_max, heart_rate_mean = excluded.heart_rate_mean, heart_rate_p50 = excluded.heart_rate_p50,
        temperature_min = excluded.temperature_min, temperature_max = excluded.temperature_max, temperature_mean = excluded.temperature_mean, temperature_p50 = excluded.temperature_p50,
        respiratory_rate_min = excluded.respiratory_rate_min, respiratory_rate_max = excluded.respiratory_rate_max, respiratory_rate_mean = excluded.respiratory_rate_mean, respiratory_rate_p50 = excluded.respiratory_rate_p50,
        hydration_pct_min = excluded.hydration_pct_min, hydration_pct_max = excluded.hydration_pct_max, hydration_pct_mean = excluded.hydration_pct_mean, hydration_pct_p50 = excluded.hydration_pct_p50,
        ambient_temp_min = excluded.ambient_temp_min, ambient_temp_max = excluded.ambient_temp_max, ambient_temp_mean = excluded.ambient_temp_mean, ambient_temp_p50 = excluded.ambient_temp_p50,
        activity_level_min = excluded.activity_level_min, activity_level_max = excluded.activity_level_max, activity_level_mean = excluded.activity_level_mean, activity_level_p50 = excluded.activity_level_p50,
        pain_scale_min = excluded.pain_scale_min, pain_scale_max = excluded.pain_scale_max, pain_scale_mean = excluded.pain_scale_mean, pain_scale_p50 = excluded.pain_scale_p50,
        updated_at = now();
    GET DIAGNOSTICS recomputed = ROW_COUNT;
    RETURN recomputed;
END;
$$;
COMMENT ON FUNCTION kidjamo.recompute_vitals_hourly(text[], timestamptz[]) IS 'Recompute the hourly rollup rows of these (patient, hour) pairs from kidjamo.measurements.';

-- (patient, hour) pairs whose rollup row is out of date: loads that defer the rollup
-- (load_measurements(defer_rollup=True)) record them here instead of recomputing each minute the
-- whole hour so far; the maintenance refresh recomputes them once (recompute_pending_vitals_hourly).
CREATE TABLE kidjamo.vitals_hourly_pending (
    patient_id  text NOT NULL,
    hour        timestamptz NOT NULL,
    PRIMARY KEY (patient_id, hour)
);
COMMENT ON TABLE kidjamo.vitals_hourly_pending IS 'One row per (patient, UTC hour) whose vitals_hourly_rollup row awaits recomputation (deferred loads).';

-- Deferred loads hold this lock shared until they commit; the recomputation takes it exclusively,
-- so it sees every committed load and no pending pair is consumed before its readings are visible.
CREATE FUNCTION kidjamo.recompute_pending_vitals_hourly(max_pairs integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    patient_ids text[];
    hours timestamptz[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('kidjamo.vitals_hourly_pending'));
    WITH taken AS (
        DELETE FROM kidjamo.vitals_hourly_pending AS p
        USING (SELECT patient_id, hour FROM kidjamo.vitals_hourly_pending ORDER BY hour, patient_id LIMIT max_pairs) AS c
        WHERE p.patient_id = c.patient_id AND p.hour = c.hour
        RETURNING p.patient_id, p.hour
    )
    SELECT array_agg(patient_id), array_agg(hour) INTO patient_ids, hours FROM taken;
    IF patient_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM kidjamo.recompute_vitals_hourly(patient_ids, hours);
    RETURN cardinality(patient_ids);
END;
$$;
COMMENT ON FUNCTION kidjamo.recompute_pending_vitals_hourly(integer) IS 'Recompute the rollup rows of up to max_pairs pending (patient, hour) pairs and clear them; returns how many pairs were taken.';

-- Latest state of each device, upserted by each load (an older, late reading never overwrites it).
CREATE TABLE kidjamo.device_status (
    device_id            text PRIMARY KEY,
    patient_id           text NOT NULL,
    last_measured_at     timestamptz NOT NULL,
    last_arrival_minute  timestamptz NOT NULL,
    battery_level        real,
    signal_quality       real,
    low_battery          boolean,
    weak_signal          boolean,
    firmware_version     text,
    updated_at           timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);  -- every row is updated each minute: room on the page keeps updates HOT (~2x faster)
CREATE INDEX device_status_patient_idx ON kidjamo.device_status (patient_id);
COMMENT ON TABLE kidjamo.device_status IS 'One row per device that ever sent a loaded reading: its most recent reading''s metadata.';

-- Daily data-quality counts, kept by statement triggers on kidjamo.quarantine and kidjamo.data_quality_results.
CREATE TABLE kidjamo.quarantine_daily (
    day      date NOT NULL,
    layer    text NOT NULL,
    reason   text NOT NULL,
    records  bigint NOT NULL,
    PRIMARY KEY (day, layer, reason)
);
COMMENT ON TABLE kidjamo.quarantine_daily IS 'One row per UTC arrival day, layer and reason: records quarantined.';

CREATE TABLE kidjamo.gate_daily (
    day                 date NOT NULL,
    suite               text NOT NULL,
    validations         bigint NOT NULL,
    failed_validations  bigint NOT NULL,
    evaluated_rows      bigint NOT NULL,
    failed_rows         bigint NOT NULL,
    PRIMARY KEY (day, suite)
);
COMMENT ON TABLE kidjamo.gate_daily IS 'One row per UTC day of the interval and gate suite: validations run and failed.';

CREATE FUNCTION kidjamo.maintain_quarantine_daily() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE kidjamo.quarantine_daily AS q SET records = q.records - gone.records
        FROM (SELECT (arrival_minute AT TIME ZONE 'UTC')::date AS day, layer, reason, count(*) AS records
              FROM old_rows GROUP BY 1, 2, 3) AS gone
        WHERE (q.day, q.layer, q.reason) = (gone.day, gone.layer, gone.reason);
        DELETE FROM kidjamo.quarantine_daily WHERE records <= 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO kidjamo.quarantine_daily AS q (day, layer, reason, records)
        SELECT (arrival_minute AT TIME ZONE 'UTC')::date, layer, reason, count(*) FROM new_rows GROUP BY 1, 2, 3
        ON CONFLICT (day, layer, reason) DO UPDATE SET records = q.records + excluded.records;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER quarantine_daily_insert AFTER INSERT ON kidjamo.quarantine
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.maintain_quarantine_daily();
CREATE TRIGGER quarantine_daily_update AFTER UPDATE ON kidjamo.quarantine
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.maintain_quarantine_daily();
CREATE TRIGGER quarantine_daily_delete AFTER DELETE ON kidjamo.quarantine
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.maintain_quarantine_daily();

CREATE FUNCTION kidjamo.maintain_gate_daily() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE kidjamo.gate_daily AS g SET
            validations = g.validations - gone.validations,
            failed_validations = g.failed_validations - gone.failed_validations,
            evaluated_rows = g.evaluated_rows - gone.evaluated_rows,
            failed_rows = g.failed_rows - gone.failed_rows
        FROM (SELECT (interval_start AT TIME ZONE 'UTC')::date AS day, suite, count(*) AS validations,
                     count(*) FILTER (WHERE NOT success) AS failed_validations,
                     sum(evaluated) AS evaluated_rows, sum(failed_rows) AS failed_rows
              FROM old_rows GROUP BY 1, 2) AS gone
        WHERE (g.day, g.suite) = (gone.day, gone.suite);
        DELETE FROM kidjamo.gate_daily WHERE validations <= 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO kidjamo.gate_daily AS g (day, suite, validations, failed_validations, evaluated_rows, failed_rows)
        SELECT (interval_start AT TIME ZONE 'UTC')::date, suite, count(*), count(*) FILTER (WHERE NOT success),
               sum(evaluated), sum(failed_rows)
        FROM new_rows GROUP BY 1, 2
        ON CONFLICT (day, suite) DO UPDATE SET
            validations = g.validations + excluded.validations,
            failed_validations = g.failed_validations + excluded.failed_validations,
            evaluated_rows = g.evaluated_rows + excluded.evaluated_rows,
            failed_rows = g.failed_rows + excluded.failed_rows;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER gate_daily_insert AFTER INSERT ON kidjamo.data_quality_results
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.maintain_gate_daily();
CREATE TRIGGER gate_daily_update AFTER UPDATE ON kidjamo.data_quality_results
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.maintain_gate_daily();
CREATE TRIGGER gate_daily_delete AFTER DELETE ON kidjamo.data_quality_results
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo.maintain_gate_daily();

-- ------------------------------------------------------------------------------------------------
-- Analyst objects. Keys are pseudonyms; no names, birth dates, device serials or contact data.
CREATE MATERIALIZED VIEW analytics.vitals_hourly AS
SELECT
    p.pseudonym AS patient_key,
    r.hour,
    r.readings,
    r.spo2_min, r.spo2_max, r.spo2_mean, r.spo2_p50,
    r.heart_rate_min, r.heart_rate_max, r.heart_rate_mean, r.heart_rate_p50,
    r.temperature_min, r.temperature_max, r.temperature_mean, r.temperature_p50,
    r.respiratory_rate_min, r.respiratory_rate_max, r.respiratory_rate_mean, r.respiratory_rate_p50,
    r.hydration_pct_min, r.hydration_pct_max, r.hydration_pct_mean, r.hydration_pct_p50,
    r.ambient_temp_min, r.ambient_temp_max, r.ambient_temp_mean, r.ambient_temp_p50,
    r.activity_level_min, r.activity_level_max, r.activity_level_mean, r.activity_level_p50,
    r.pain_scale_min, r.pain_scale_max, r.pain_scale_mean, r.pain_scale_p50
FROM kidjamo.vitals_hourly_rollup AS r
JOIN kidjamo.pseudonyms AS p ON p.subject = 'patient' AND p.identifier = r.patient_id;
CREATE UNIQUE INDEX vitals_hourly_key ON analytics.vitals_hourly (patient_key, hour);
COMMENT ON MATERIALIZED VIEW analytics.vitals_hourly IS 'One row per pseudonymized patient and UTC hour of measurement: readings and the min, max, mean and median (p50) of each vital. Refreshed on the maintenance schedule.';

CREATE MATERIALIZED VIEW analytics.patient_daily AS
WITH readings AS (
    SELECT patient_id, (hour AT TIME ZONE 'UTC')::date AS day,
           sum(readings) AS readings,
           min(spo2_min) AS spo2_min,
           (sum(spo2_mean * readings) / nullif(sum(readings) FILTER (WHERE spo2_mean IS NOT NULL), 0))::real AS spo2_mean,
           (sum(heart_rate_mean * readings) / nullif(sum(readings) FILTER (WHERE heart_rate_mean IS NOT NULL), 0))::real AS heart_rate_mean,
           max(heart_rate_max) AS heart_rate_max,
           max(temperature_max) AS temperature_max,
           min(hydration_pct_min) AS hydration_pct_min,
           max(pain_scale_max) AS pain_scale_max
    FROM kidjamo.vitals_hourly_rollup
    GROUP BY 1, 2
),
-- Each reading stands for its 30 s sampling interval, so an alert episode covers
-- [first_reading_at, last_reading_at + 30 s), cut at UTC midnight; episodes of one severity are
-- merged (range_agg) so that overlapping rules are not counted twice.
alert_spans AS (
    SELECT a.patient_id, (day_start AT TIME ZONE 'UTC')::date AS day, a.severity,
           tstzrange(greatest(a.first_reading_at, day_start),
                     least(a.last_reading_at + interval '30 seconds', day_start + interval '24 hours')) AS span
    FROM kidjamo.alerts AS a
    CROSS JOIN LATERAL generate_series(date_trunc('day', a.first_reading_at, 'UTC'),
                                       a.last_reading_at + interval '30 seconds' - interval '1 microsecond',
                                       interval '24 hours') AS day_start
),
merged AS (
    SELECT patient_id, day, severity, range_agg(span) AS spans FROM alert_spans GROUP BY 1, 2, 3
),
alert_time AS (
    SELECT m.patient_id, m.day,
           sum(extract(epoch FROM upper(s) - lower(s))) FILTER (WHERE m.severity = 'info') AS info_seconds,
           sum(extract(epoch FROM upper(s) - lower(s))) FILTER (WHERE m.severity = 'warning') AS warning_seconds,
           sum(extract(epoch FROM upper(s) - lower(s))) FILTER (WHERE m.severity = 'high') AS high_seconds,
           sum(extract(epoch FROM upper(s) - lower(s))) FILTER (WHERE m.severity = 'critical') AS critical_seconds
    FROM merged AS m CROSS JOIN LATERAL unnest(m.spans) AS s
    GROUP BY 1, 2
)
SELECT
    p.pseudonym AS patient_key,
    day,
    coalesce(r.readings, 0)::integer AS readings,
    -- one reading every 30 s is 2,880 a day
    least(coalesce(r.readings, 0) / 2880.0, 1)::numeric(5, 4) AS completeness,
    r.spo2_min, r.spo2_mean, r.heart_rate_mean, r.heart_rate_max, r.temperature_max, r.hydration_pct_min, r.pain_scale_max,
    coalesce(t.info_seconds, 0)::integer AS info_alert_seconds,
    coalesce(t.warning_seconds, 0)::integer AS warning_alert_seconds,
    coalesce(t.high_seconds, 0)::integer AS high_alert_seconds,
    coalesce(t.critical_seconds, 0)::integer AS critical_alert_seconds
FROM readings AS r
FULL JOIN alert_time AS t USING (patient_id, day)
JOIN kidjamo.pseudonyms AS p ON p.subject = 'patient' AND p.identifier = coalesce(r.patient_id, t.patient_id);
CREATE UNIQUE INDEX patient_daily_key ON analytics.patient_daily (patient_key, day);
COMMENT ON MATERIALIZED VIEW analytics.patient_daily IS 'One row per pseudonymized patient and UTC day: readings, completeness (readings / 2,880 expected), vital extremes and seconds spent under an open alert of each severity. Refreshed on the maintenance schedule.';

CREATE MATERIALIZED VIEW analytics.device_health AS
SELECT
    dk.pseudonym AS device_key,
    pk.pseudonym AS patient_key,
    d.active,
    s.firmware_version,
    s.last_measured_at AS last_reading_at,
    s.last_arrival_minute,
    s.battery_level,
    s.signal_quality,
    coalesce(s.low_battery, false) AS low_battery,
    coalesce(s.weak_signal, false) AS weak_signal,
    extract(epoch FROM now() - s.last_measured_at)::bigint AS silent_seconds,
    now() AS refreshed_at
FROM kidjamo.devices AS d
JOIN kidjamo.pseudonyms AS dk ON dk.subject = 'device' AND dk.identifier = d.device_id
JOIN kidjamo.pseudonyms AS pk ON pk.subject = 'patient' AND pk.identifier = d.patient_id
LEFT JOIN kidjamo.device_status AS s ON s.device_id = d.device_id;
CREATE UNIQUE INDEX device_health_key ON analytics.device_health (device_key);
COMMENT ON MATERIALIZED VIEW analytics.device_health IS 'One row per registered device (pseudonymized): latest battery and signal, and silent_seconds since its last reading as of refreshed_at (NULL if it never sent one). Refreshed every minute.';

CREATE MATERIALIZED VIEW analytics.data_quality_daily AS
SELECT day, 'quarantine'::text AS check_kind, layer, reason AS check_name,
       NULL::bigint AS validations, NULL::bigint AS failed_validations,
       NULL::bigint AS evaluated_rows, records AS failed_rows
FROM kidjamo.quarantine_daily
UNION ALL
SELECT day, 'gate'::text, suite, suite, validations, failed_validations, evaluated_rows, failed_rows
FROM kidjamo.gate_daily;
CREATE UNIQUE INDEX data_quality_daily_key ON analytics.data_quality_daily (day, check_kind, layer, check_name);
COMMENT ON MATERIALIZED VIEW analytics.data_quality_daily IS 'One row per UTC day and check: for check_kind quarantine, the records a layer quarantined for one reason (failed_rows); for check_kind gate, the validations of one Great Expectations suite and how many failed. Refreshed every minute.';

CREATE VIEW analytics.active_alerts AS
SELECT a.alert_id, p.pseudonym AS patient_key, a.rule_id, a.rule_version, a.severity, a.status,
       a.first_reading_at, a.last_reading_at, a.reading_count, a.opened_at, a.updated_at
FROM kidjamo.alerts AS a
JOIN kidjamo.pseudonyms AS p ON p.subject = 'patient' AND p.identifier = a.patient_id
WHERE a.status <> 'resolved';
COMMENT ON VIEW analytics.active_alerts IS 'One row per alert that is open or acknowledged (not resolved), keyed by pseudonymized patient. Live.';

CREATE VIEW analytics.patients_critical AS
SELECT p.pseudonym AS patient_key,
       count(*)::integer AS critical_alerts,
       array_agg(DISTINCT a.rule_id ORDER BY a.rule_id) AS rule_ids,
       min(a.first_reading_at) AS critical_since,
       max(a.last_reading_at) AS last_reading_at,
       bool_or(a.status = 'open') AS unacknowledged
FROM kidjamo.alerts AS a
JOIN kidjamo.pseudonyms AS p ON p.subject = 'patient' AND p.identifier = a.patient_id
WHERE a.status <> 'resolved' AND a.severity = 'critical'
GROUP BY p.pseudonym;
COMMENT ON VIEW analytics.patients_critical IS 'One row per pseudonymized patient with at least one critical alert not yet resolved. Live.';

-- REFRESH needs the ownership of the view: the pipeline role may only call this.
CREATE FUNCTION kidjamo.refresh_analytics_view(view_name text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_matviews WHERE schemaname = 'analytics' AND matviewname = view_name) THEN
        RAISE EXCEPTION 'analytics.% is not a materialized view', view_name;
    END IF;
    EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY analytics.%I', view_name);
END;
$$;
COMMENT ON FUNCTION kidjamo.refresh_analytics_view(text) IS 'REFRESH MATERIALIZED VIEW CONCURRENTLY one view of schema analytics.';
