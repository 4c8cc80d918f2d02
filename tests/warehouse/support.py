"""Helpers of the warehouse tests: registry files, silver batches and role-switched connections."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pyarrow as pa

from kidjamo.lake.schema import SILVER

REGISTRY_HEADER = "patient_id,birth_date,sex,genotype,device_id,care_team,baseline_spo2\n"
REGISTRY_LINES = [
    "patient-001,2015-03-02,F,HbSS,device-001,team-a,96",
    "patient-002,1990-07-14,M,HbSC,device-002,team-b,",
    "patient-002,1990-07-14,M,HbSC,device-003,team-b,",
    "patient-003,2020-01-30,X,HbSB+,device-004,,94.5",
]


def write_registry(path: Path, lines: list[str]) -> Path:
    path.write_text(REGISTRY_HEADER + "".join(line + "\n" for line in lines))
    return path


@contextmanager
def as_role(url: str, role: str, **settings: str):
    """A connection whose transaction runs as ``role`` (SET ROLE), with session settings applied."""
    with psycopg.connect(url) as connection:
        connection.execute(f"SET ROLE {role}")
        for name, value in settings.items():
            connection.execute("SELECT set_config(%s, %s, false)", (name, value))
        yield connection


def silver_batch(
    readings: list[tuple[str, str, datetime]],
    *,
    arrival_minute: datetime | None = None,
    raw_file: str = "raw/vitals/dt=2026-11-27/hh=15/mm=31/batch.ndjson",
    spo2: float = 95.0,
    overrides: dict | None = None,
) -> pa.Table:
    """A SILVER table of (device_id, patient_id, measured_at) readings with plausible vitals."""
    n = len(readings)
    arrival = arrival_minute or datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
    columns = {
        "device_id": [r[0] for r in readings],
        "patient_id": [r[1] for r in readings],
        "measured_at": [r[2] for r in readings],
        "message_id": [None] * n,
        "spo2": [spo2] * n,
        "heart_rate": [85.0] * n,
        "temperature": [37.1] * n,
        "ambient_temp": [23.5] * n,
        "respiratory_rate": [18.0] * n,
        "hydration_pct": [82.5] * n,
        "activity_level": [3] * n,
        "pain_scale": [2] * n,
        "ambient_humidity": [None] * n,
        "battery_level": [78.0] * n,
        "signal_quality": [95.0] * n,
        "firmware_version": ["v2.1.3"] * n,
        "extra_fields": [0] * n,
        "raw_file": [raw_file] * n,
        "record_index": list(range(n)),
        "record_hash": [f"{i:064x}" for i in range(n)],
        "arrival_minute": [arrival] * n,
        "ingested_at": [arrival + timedelta(minutes=1)] * n,
        "age_years": [11.7] * n,
        "age_band": ["school"] * n,
        "genotype": ["HbSS"] * n,
        "care_team": ["team-a"] * n,
        "spo2_baseline": [96.0] * n,
        "heart_rate_baseline": [None] * n,
        "temperature_baseline": [None] * n,
        "hydration_baseline": [None] * n,
        "news2_partial": [None] * n,
        "news2_max_parameter": [None] * n,
        "heat_index_c": [23.5] * n,
        "heat_index_unknown": [True] * n,
        "physiological_strain_index": [1.2] * n,
        "spo2_low_confidence": [False] * n,
        "low_battery": [False] * n,
        "weak_signal": [False] * n,
        "delay_seconds": [30.0] * n,
        "is_late": [False] * n,
    }
    columns.update(overrides or {})
    return pa.Table.from_pydict(columns, schema=SILVER)


def insert_alert(url: str, patient_id: str, *, severity: str = "critical", status: str = "open", rule_id: str = "spo2_low",
                 first_reading_at: datetime, last_reading_at: datetime) -> int:
    """Insert one alert row directly (the alert logic itself is tested by the alerts suite)."""
    with psycopg.connect(url) as connection:
        return connection.execute(
            "INSERT INTO kidjamo.alerts (patient_id, rule_id, rule_version, severity, status, first_reading_at, last_reading_at, evidence)"
            " VALUES (%s, %s, '1', %s, %s, %s, %s, '{}') RETURNING alert_id",
            (patient_id, rule_id, severity, status, first_reading_at, last_reading_at),
        ).fetchone()[0]
