-- Clinical safety (issue 11): an alert resolves itself only after a normal reading of the
-- parameter that fired it, an acknowledged alert whose rule still matches is notified again, and an
-- unknown heat index is called unknown.
ALTER TABLE kidjamo.alerts ADD COLUMN normal_reading_at timestamptz;
COMMENT ON COLUMN kidjamo.alerts.normal_reading_at IS
    'Latest reading after last_reading_at in which the parameters of the rule were measured and the rule did not match.';

ALTER TABLE kidjamo.alert_events DROP CONSTRAINT alert_events_event_type_check;
ALTER TABLE kidjamo.alert_events ADD CONSTRAINT alert_events_event_type_check CHECK (event_type IN (
    'opened', 'escalated', 'escalation_notice', 'acknowledged', 'resolved', 'reopened', 'renotified'));
COMMENT ON COLUMN kidjamo.alert_events.event_type IS
    'renotified: an acknowledged alert whose rule still matches, notified again to the care team.';

-- Without humidity the heat index is unknown (35 degC is a heat index of ~50 degC at 70 % RH): the
-- ambient temperature is no bound of it, and silver no longer writes it in its place.
ALTER TABLE kidjamo.measurements RENAME COLUMN heat_index_is_lower_bound TO heat_index_unknown;
COMMENT ON COLUMN kidjamo.measurements.heat_index_unknown IS 'No humidity was measured: heat_index_c is null (unknown).';
