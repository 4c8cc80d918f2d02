-- Per-minute cost that does not grow with the fleet's history.
--
-- analytics.device_health becomes a plain view over kidjamo.device_status, which every load already
-- upserts for the devices of its batch: a concurrent refresh of the materialized view rewrote one
-- row per device every minute (every device changes every minute), ~4 s at 100,000 devices. The
-- view has the same columns; silent_seconds and refreshed_at are now computed when it is read
-- (always current instead of up to a minute old).
DROP MATERIALIZED VIEW IF EXISTS analytics.device_health;
CREATE OR REPLACE VIEW analytics.device_health AS
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
COMMENT ON VIEW analytics.device_health IS 'One row per registered device (pseudonymized): latest battery and signal, and silent_seconds since its last reading as of refreshed_at, the time of the query (NULL if it never sent one). Live: kept by every load (kidjamo.device_status).';
GRANT SELECT ON analytics.device_health TO kidjamo_analyst, kidjamo_pipeline;

-- Nothing reads kidjamo.measurements by arrival minute (the lake is partitioned by it; the
-- warehouse is read by device, patient and measurement time): one index less to write per reading.
DROP INDEX IF EXISTS kidjamo.measurements_arrival_idx;

-- The alert step's compact per-device state: besides the latest measured_at, the SpO2 and heart
-- rate of that reading. The cross-batch flatline rule needs history only where a device's previous
-- reading repeats a value of its first new one; this state answers that for every device in one
-- join, instead of one index probe per device into kidjamo.measurements.
ALTER TABLE kidjamo.device_last_seen
    ADD COLUMN IF NOT EXISTS last_spo2 real,
    ADD COLUMN IF NOT EXISTS last_heart_rate real;
COMMENT ON COLUMN kidjamo.device_last_seen.last_spo2 IS 'SpO2 of the reading at last_measured_at (NULL if not measured).';
COMMENT ON COLUMN kidjamo.device_last_seen.last_heart_rate IS 'Heart rate of the reading at last_measured_at (NULL if not measured).';
