-- Clinical safety (issue 11): an alert resolves itself only after a normal reading of the
-- parameter that fired it, and an acknowledged alert whose rule still matches is notified again.
ALTER TABLE kidjamo.alerts ADD COLUMN normal_reading_at timestamptz;
COMMENT ON COLUMN kidjamo.alerts.normal_reading_at IS
    'Latest reading after last_reading_at in which the parameters of the rule were measured and the rule did not match.';

ALTER TABLE kidjamo.alert_events DROP CONSTRAINT alert_events_event_type_check;
ALTER TABLE kidjamo.alert_events ADD CONSTRAINT alert_events_event_type_check CHECK (event_type IN (
    'opened', 'escalated', 'escalation_notice', 'acknowledged', 'resolved', 'reopened', 'renotified'));
COMMENT ON COLUMN kidjamo.alert_events.event_type IS
    'renotified: an acknowledged alert whose rule still matches, notified again to the care team.';
