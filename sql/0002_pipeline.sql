-- Pipeline bookkeeping: runs with their per-layer accounting, quarantined records, gate results.
CREATE TABLE kidjamo.pipeline_runs (
    run_id          text NOT NULL,
    step            text NOT NULL,
    interval_start  timestamptz NOT NULL,
    interval_end    timestamptz NOT NULL CHECK (interval_end > interval_start),
    status          text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    counts          jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (run_id, step)
);
COMMENT ON TABLE kidjamo.pipeline_runs IS 'One row per pipeline step of a run, with its record counts (the accounting).';

CREATE TABLE kidjamo.quarantine (
    raw_file        text NOT NULL,
    record_index    integer NOT NULL,
    layer           text NOT NULL,
    reason          text NOT NULL,
    field           text,
    detail          text NOT NULL,
    device_id       text,
    measured_at     timestamptz,
    original_text   text NOT NULL,
    record_hash     text,
    arrival_minute  timestamptz NOT NULL,
    run_id          text NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (raw_file, record_index, layer)
);
CREATE INDEX quarantine_arrival_idx ON kidjamo.quarantine (arrival_minute);
CREATE INDEX quarantine_reason_idx ON kidjamo.quarantine (reason, arrival_minute);
COMMENT ON TABLE kidjamo.quarantine IS 'One row per record rejected by a layer, with its reason code and original text.';

CREATE TABLE kidjamo.data_quality_results (
    run_id          text NOT NULL,
    suite           text NOT NULL,
    interval_start  timestamptz NOT NULL,
    interval_end    timestamptz NOT NULL,
    success         boolean NOT NULL,
    evaluated       integer NOT NULL,
    failed_rows     integer NOT NULL,
    statistics      jsonb NOT NULL DEFAULT '{}'::jsonb,
    results         jsonb NOT NULL DEFAULT '[]'::jsonb,
    validated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, suite)
);
COMMENT ON TABLE kidjamo.data_quality_results IS 'One row per Great Expectations gate validation of a run.';
