-- No reading lost, no minute blocked (issue 12): devices judged on their own share of bad readings.

-- A device whose share of bad readings in a batch is too high (a broken or hostile producer) no longer
-- fails everyone's batch: its readings of that batch are quarantined (device_flooding) and one row
-- here says so, for the operators' alarm and the care team's check of the device.
CREATE TABLE kidjamo.device_incidents (
    device_id       text NOT NULL,
    arrival_minute  timestamptz NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('flooding')),
    readings        integer NOT NULL CHECK (readings > 0),
    bad_readings    integer NOT NULL CHECK (bad_readings >= 0),
    reasons         jsonb NOT NULL DEFAULT '{}'::jsonb,
    run_id          text NOT NULL,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, arrival_minute, kind)
);
CREATE INDEX device_incidents_detected_idx ON kidjamo.device_incidents (detected_at);
COMMENT ON TABLE kidjamo.device_incidents IS 'A device that flooded a batch with bad readings: its readings of that arrival minute were quarantined (device_flooding).';
COMMENT ON COLUMN kidjamo.device_incidents.reasons IS 'Quarantine reason codes of its bad readings, with counts.';
