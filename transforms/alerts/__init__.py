"""Clinical alerts, one module per job, in the order the pipeline runs them for an interval:

- :mod:`~transforms.alerts.evaluate` (pure): the rules over the batch's readings -> candidates;
- :mod:`~transforms.alerts.history`: the recent readings and device last-seen times the rules need;
- :mod:`~transforms.alerts.store`: candidates upserted into ``kidjamo.alerts``, events, resolution after a
  normal reading;
- :mod:`~transforms.alerts.escalation`: unacknowledged critical and high alerts escalated, reminders for
  acknowledged alerts that persist;
- :mod:`~transforms.alerts.delivery`: queued notifications sent and every attempt recorded;
- :mod:`~transforms.alerts.fast_path`: a critical alert within seconds, from the ingestion service;
- :mod:`~transforms.alerts.actions`: clinicians list, acknowledge, resolve and escalate alerts (CLI and care-team app).
"""
