"""The simulated sensor fleet, a producer of readings (not part of the ingestion service):

- :mod:`~ingestion.simulator.fleet`: patients, their physiology, scenarios, provisioning;
- :mod:`~ingestion.simulator.payloads`: the payloads devices send and the NDJSON landing files;
- :mod:`~ingestion.simulator.senders`: straight to landing, or signed HTTP posts; the simulation loop.
"""
