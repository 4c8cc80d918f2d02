-- Shards (KIDJAMO_SHARDS): several loads of one minute run at once and may all need a new day's
-- partition. The function already serialised them on the day, but re-checked with to_regclass(),
-- which answers from the backend's catalog cache: an advisory lock does not make a backend read the
-- invalidations of the transaction that just created the partition, so the second load tried to
-- create it again ("relation measurements_YYYYMMDD already exists"). The re-check now reads
-- pg_class under the statement's own snapshot, which sees what committed before the lock was granted.
CREATE OR REPLACE FUNCTION kidjamo.ensure_measurement_partitions_for(days date[])
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
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                           JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'kidjamo' AND c.relname = partition_name) THEN
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
