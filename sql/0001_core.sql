-- Core tables: the patient registry, devices, and the partitioned measurements.
CREATE SCHEMA IF NOT EXISTS kidjamo;
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE kidjamo.patients (
    patient_id     text PRIMARY KEY,
    birth_date     date NOT NULL CHECK (birth_date > DATE '1900-01-01'),
    sex            text NOT NULL CHECK (sex IN ('F', 'M', 'X')),
    genotype       text NOT NULL CHECK (genotype IN ('HbSS', 'HbSC', 'HbSB0', 'HbSB+', 'HbSD', 'HbSO', 'HbSE', 'other')),
    care_team      text,
    baseline_spo2  real CHECK (baseline_spo2 BETWEEN 50 AND 100),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kidjamo.patients IS 'One row per monitored patient (the registry, loaded by kidjamo patients import).';

CREATE TABLE kidjamo.devices (
    device_id   text PRIMARY KEY,
    patient_id  text NOT NULL REFERENCES kidjamo.patients (patient_id),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_patient_idx ON kidjamo.devices (patient_id);
COMMENT ON TABLE kidjamo.devices IS 'One row per wearable; a device belongs to one patient at a time.';

-- One row per reading that reached silver. Keyed on (device_id, measured_at): re-loads are no-ops.
CREATE TABLE kidjamo.measurements (
    device_id                   text NOT NULL,
    patient_id                  text NOT NULL,
    measured_at                 timestamptz NOT NULL,
    arrival_minute              timestamptz NOT NULL,
    message_id                  text,
    spo2                        real CHECK (spo2 BETWEEN 50 AND 100),
    heart_rate                  real CHECK (heart_rate BETWEEN 25 AND 300),
    temperature                 real CHECK (temperature BETWEEN 30 AND 45),
    ambient_temp                real CHECK (ambient_temp BETWEEN -40 AND 60),
    respiratory_rate            real CHECK (respiratory_rate BETWEEN 4 AND 120),
    hydration_pct               real CHECK (hydration_pct BETWEEN 0 AND 100),
    activity_level              smallint CHECK (activity_level BETWEEN 0 AND 10),
    pain_scale                  smallint CHECK (pain_scale BETWEEN 0 AND 10),
    ambient_humidity            real CHECK (ambient_humidity BETWEEN 0 AND 100),
    battery_level               real CHECK (battery_level BETWEEN 0 AND 100),
    signal_quality              real CHECK (signal_quality BETWEEN 0 AND 100),
    firmware_version            text,
    age_band                    text,
    news2_partial               smallint,
    heat_index_c                real,
    physiological_strain_index  real,
    spo2_low_confidence         boolean NOT NULL DEFAULT false,
    is_late                     boolean NOT NULL DEFAULT false,
    raw_file                    text NOT NULL,
    record_index                integer NOT NULL,
    record_hash                 text NOT NULL,
    loaded_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, measured_at)
) PARTITION BY RANGE (measured_at);
CREATE INDEX measurements_patient_time_idx ON kidjamo.measurements (patient_id, measured_at);
CREATE INDEX measurements_arrival_idx ON kidjamo.measurements (arrival_minute);
COMMENT ON TABLE kidjamo.measurements IS 'One row per validated reading (silver), partitioned by day of measured_at.';

-- Daily partitions, created ahead by maintenance and on demand by loads.
CREATE FUNCTION kidjamo.ensure_measurement_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date;
    created integer := 0;
    partition_name text;
BEGIN
    day := first_day;
    WHILE day <= last_day LOOP
        partition_name := 'measurements_' || to_char(day, 'YYYYMMDD');
        IF to_regclass('kidjamo.' || partition_name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE kidjamo.%I PARTITION OF kidjamo.measurements FOR VALUES FROM (%L) TO (%L)',
                partition_name, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END;
$$;
