"""Alert tests: registered patients and devices in a fresh database, and helpers to read alerts back."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from psycopg.rows import dict_row

from kidjamo.settings import Settings


@pytest.fixture
def alerts_db(fresh_database_url):
    """A fresh database with patients p1 (adult HbSS), p2 (child HbSC), p3 (infant HbSS), one device each."""
    with psycopg.connect(fresh_database_url) as connection:
        for patient_id, birth, genotype in [("p1", date(1996, 1, 1), "HbSS"), ("p2", date(2018, 1, 1), "HbSC"),
                                            ("p3", date(2026, 6, 1), "HbSS")]:
            connection.execute(
                "INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype, care_team) VALUES (%s, %s, 'F', %s, 'team-a')",
                (patient_id, birth, genotype))
            connection.execute("INSERT INTO kidjamo.devices (device_id, patient_id) VALUES (%s, %s)",
                               (f"d{patient_id[1:]}", patient_id))
    return fresh_database_url


@pytest.fixture
def log_settings(tmp_path):
    return Settings(home=tmp_path, notify_channels="log", notify_min_severity="high")


def query(url: str, sql: str, params=()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as connection:
        return connection.execute(sql, params).fetchall()


def alerts(url: str) -> list[dict]:
    return query(url, "SELECT * FROM kidjamo.alerts ORDER BY alert_id")


def count(url: str, table: str) -> int:
    return query(url, f"SELECT count(*) AS n FROM kidjamo.{table}")[0]["n"]


def load_measurements(url: str, rows: list[dict]) -> None:
    """Insert readings into kidjamo.measurements as the pipeline's load step would (the history rules read)."""
    columns = ["device_id", "patient_id", "measured_at", "spo2", "heart_rate", "temperature", "respiratory_rate",
               "pain_scale", "age_years", "raw_file", "record_index"]
    days = sorted({row["measured_at"].date() for row in rows})
    with psycopg.connect(url) as connection:
        connection.execute("SELECT kidjamo.ensure_measurement_partitions(%s, %s)", (days[0], days[-1]))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO kidjamo.measurements ({', '.join(columns)}, arrival_minute, record_hash, run_id)"
                f" VALUES ({', '.join(['%s'] * len(columns))}, %s, 'hash', 'test') ON CONFLICT DO NOTHING",
                [[row[c] for c in columns] + [row["measured_at"]] for row in rows],
            )
