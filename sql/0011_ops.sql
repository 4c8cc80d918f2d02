-- Operations: what the metrics exporter reads, cheaply and with no access to patient data.

-- The exporter's newest-run lookups (freshness per step) and recent failures: index scans, whatever
-- the history (bench/metrics_scrape.py).
CREATE INDEX IF NOT EXISTS pipeline_runs_newest_success_idx
    ON kidjamo.pipeline_runs (step, interval_end DESC) WHERE status = 'success';
CREATE INDEX IF NOT EXISTS pipeline_runs_failed_idx
    ON kidjamo.pipeline_runs (finished_at) WHERE status = 'failed';
CREATE INDEX IF NOT EXISTS data_quality_results_newest_idx
    ON kidjamo.data_quality_results (suite, interval_end DESC, validated_at DESC);
CREATE INDEX IF NOT EXISTS alerts_open_critical_idx
    ON kidjamo.alerts (severity_since) WHERE status = 'open' AND severity = 'critical';

-- kidjamo_monitor: the exporter's role (a deployment grants it to the exporter's login user).
-- Column grants keep patient identifiers, evidence and quarantined text out of its reach.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kidjamo_monitor') THEN
        BEGIN
            CREATE ROLE kidjamo_monitor NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it meanwhile
        END;
    END IF;
END;
$$;
GRANT USAGE ON SCHEMA kidjamo TO kidjamo_monitor;
GRANT SELECT ON kidjamo.pipeline_runs, kidjamo.gate_daily, kidjamo.quarantine_daily TO kidjamo_monitor;
GRANT SELECT (run_id, suite, interval_start, interval_end, success, evaluated, failed_rows, validated_at)
    ON kidjamo.data_quality_results TO kidjamo_monitor;
GRANT SELECT (arrival_minute, reason, layer) ON kidjamo.quarantine TO kidjamo_monitor;
GRANT SELECT (alert_id, severity, status, severity_since, opened_at) ON kidjamo.alerts TO kidjamo_monitor;
GRANT SELECT (notification_id, status, created_at, next_attempt_at) ON kidjamo.notifications TO kidjamo_monitor;
-- kidjamo.alerts has row-level security: the monitor counts every row, through its column grants only.
DROP POLICY IF EXISTS monitor_counts ON kidjamo.alerts;
CREATE POLICY monitor_counts ON kidjamo.alerts FOR SELECT TO kidjamo_monitor USING (true);
