-- Core tables: the patient registry, devices, and the partitioned measurements.
CREATE SCHEMA IF NOT EXISTS kidjamo;
CREATE SCHEMA IF NOT EXISTS analytics;
COMMENT ON SCHEMA kidjamo IS 'Operational tables of the Kidjamo pipeline (identified data; pipeline and clinicians only).';
COMMENT ON SCHEMA analytics IS 'What analysts query: pseudonymized views and materialized views, no direct identifiers.';

CREATE TABLE kidjamo.patients (
    patient_id     text PRIMARY KEY CHECK (patient_id <> ''),
    birth_date     date NOT NULL CHECK (birth_date > DATE '1900-01-01'),
    sex            text NOT NULL CHECK (sex IN ('F', 'M', 'X')),
    genotype       text NOT NULL CHECK (genotype IN ('HbSS', 'HbSC', 'HbSB0', 'HbSB+', 'HbSD', 'HbSO', 'HbSE', 'other')),
    care_team      text,
    baseline_spo2  real CHECK (baseline_spo2 BETWEEN 50 AND 100),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_care_team_idx ON kidjamo.patients (care_team);
COMMENT ON TABLE kidjamo.patients IS 'One row per monitored patient (the registry, loaded by kidjamo patients import).';

CREATE TABLE kidjamo.devices (
    device_id   text PRIMARY KEY CHECK (device_id <> ''),
    patient_id  text NOT NULL REFERENCES kidjamo.patients (patient_id),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_patient_idx ON kidjamo.devices (patient_id);
COMMENT ON TABLE kidjamo.devices IS 'One row per wearable; a device belongs to one patient at a time.';

-- One row per reading that reached silver: the columns of transforms/schema.py SILVER (without
-- ingested_at, replaced by loaded_at/run_id). Keyed on (device_id, measured_at): re-loads are no-ops.
-- No foreign key to devices: a device later erased or re-assigned must not block history loads.
CREATE TABLE kidjamo.measurements (
    device_id                   text NOT NULL,
    patient_id                  text NOT NULL,
    measured_at                 timestamptz NOT NULL,
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
    extra_fields                smallint NOT NULL DEFAULT 0 CHECK (extra_fields >= 0),
    raw_file                    text NOT NULL,
    record_index                integer NOT NULL CHECK (record_index >= 0),
    record_hash                 text NOT NULL,
    arrival_minute              timestamptz NOT NULL,
    age_years                   real CHECK (age_years >= 0),
    age_band                    text,
    genotype                    text,
    care_team                   text,
    spo2_baseline               real CHECK (spo2_baseline BETWEEN 50 AND 100),
    heart_rate_baseline         real,
    temperature_baseline        real,
    hydration_baseline          real,
    news2_partial               smallint CHECK (news2_partial >= 0),
    news2_max_parameter         smallint CHECK (news2_max_parameter BETWEEN 0 AND 3),
    heat_index_c                real,
    heat_index_is_lower_bound   boolean,
    physiological_strain_index  real,
    spo2_low_confidence         boolean NOT NULL DEFAULT false,
    low_battery                 boolean NOT NULL DEFAULT false,
    weak_signal                 boolean NOT NULL DEFAULT false,
    delay_seconds               real NOT NULL DEFAULT 0,
    is_late                     boolean NOT NULL DEFAULT false,
    run_id                      text NOT NULL,
    loaded_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, measured_at)
) PARTITION BY RANGE (measured_at);
CREATE INDEX measurements_patient_time_idx ON kidjamo.measurements (patient_id, measured_at);
CREATE INDEX measurements_arrival_idx ON kidjamo.measurements (arrival_minute);
COMMENT ON TABLE kidjamo.measurements IS 'One row per validated reading (silver), partitioned by UTC day of measured_at.';

-- Daily partitions measurements_YYYYMMDD, created ahead by maintenance and on demand by loads.
-- SECURITY DEFINER: creating a partition needs the ownership of kidjamo.measurements, which the
-- pipeline role does not have; it may only call these functions.
CREATE FUNCTION kidjamo.ensure_measurement_partitions_for(days date[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    day date;
    created integer := 0;
    partition_name text;
BEGIN
    FOR day IN SELECT DISTINCT d FROM unnest(days) AS d WHERE d IS NOT NULL ORDER BY 1 LOOP
        partition_name := 'measurements_' || to_char(day, 'YYYYMMDD');
        IF to_regclass('kidjamo.' || partition_name) IS NULL THEN
            -- Two loads may race to create the same day: serialise on the day, then re-check.
            PERFORM pg_advisory_xact_lock(724412, (day - DATE '2000-01-01'));
            IF to_regclass('kidjamo.' || partition_name) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE kidjamo.%I PARTITION OF kidjamo.measurements FOR VALUES FROM (%L) TO (%L)',
                    partition_name, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
                created := created + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
COMMENT ON FUNCTION kidjamo.ensure_measurement_partitions_for(date[]) IS 'Create the missing daily partitions of kidjamo.measurements for these UTC days; returns how many were created.';

CREATE FUNCTION kidjamo.ensure_measurement_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF last_day - first_day > 3660 THEN
        RAISE EXCEPTION 'refusing to create % daily partitions at once (% to %)', last_day - first_day + 1, first_day, last_day;
    END IF;
    RETURN kidjamo.ensure_measurement_partitions_for(
        ARRAY(SELECT generate_series(first_day, last_day, interval '1 day')::date));
END;
$$;
COMMENT ON FUNCTION kidjamo.ensure_measurement_partitions(date, date) IS 'Create the missing daily partitions of kidjamo.measurements from first_day to last_day (UTC, inclusive).';

-- Retention: whole partitions are dropped, never DELETEd row by row.
CREATE FUNCTION kidjamo.drop_measurement_partitions_before(cutoff date)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    partition_name text;
    dropped text[] := '{}';
BEGIN
    FOR partition_name IN
        SELECT child.relname
        FROM pg_inherits
        JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = 'kidjamo.measurements'::regclass
          AND child.relname ~ '^measurements_[0-9]{8}$'
          AND to_date(substr(child.relname, 14), 'YYYYMMDD') + 1 <= cutoff
        ORDER BY child.relname
    LOOP
        EXECUTE format('DROP TABLE kidjamo.%I', partition_name);
        dropped := dropped || ('kidjamo.' || partition_name);
    END LOOP;
    RETURN dropped;
END;
$$;
COMMENT ON FUNCTION kidjamo.drop_measurement_partitions_before(date) IS 'Drop the daily partitions of kidjamo.measurements that end on or before cutoff (UTC); returns their names.';
