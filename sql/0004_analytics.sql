-- Analyst views. Patient keys are pseudonymized; no direct identifiers leave schema kidjamo.
CREATE MATERIALIZED VIEW analytics.vitals_hourly AS
SELECT
    md5(m.patient_id) AS patient_key,
    date_trunc('hour', m.measured_at) AS hour,
    count(*)::integer AS readings,
    min(m.spo2) AS spo2_min,
    avg(m.spo2)::real AS spo2_mean,
    avg(m.heart_rate)::real AS heart_rate_mean,
    max(m.temperature) AS temperature_max
FROM kidjamo.measurements AS m
GROUP BY 1, 2;
CREATE UNIQUE INDEX vitals_hourly_key ON analytics.vitals_hourly (patient_key, hour);
COMMENT ON MATERIALIZED VIEW analytics.vitals_hourly IS 'One row per pseudonymized patient and hour of measurement.';
