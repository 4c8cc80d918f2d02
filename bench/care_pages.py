"""Server time of the care-team pages with a week of history (DESIGN.md: ward board of 200 patients
<= 300 ms, patient 7-day page <= 500 ms, with 7 days of 1,000 sensors in the warehouse).

A private embedded PostgreSQL (or ``--database-url``) is filled like ``bench/warehouse_refresh.py``
(same registry and history loader: one reading every 30 s per sensor), then one minute is loaded
through ``load_measurements`` so the devices' latest state is current, and a few dozen alerts are
opened on the ward. ``--ward`` patients belong to the ward's care team; a clinician of that team
logs in through the login form. Each page is then requested ``--repeat`` times in process (the
whole app path: session lookup, ``SET ROLE``, queries under row-level security, charts, templates),
after one warm-up request; the medians are printed beside the targets.

Usage: ``python -m bench.care_pages --days 7 --sensors 1000 --ward 200 --repeat 15``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import timedelta

import numpy as np

from bench.warehouse_refresh import HISTORY_START, MEASURED_GAP, add_database_arguments, fleet_database, load_history_day, minute_batch

WARD = "ward-bench"
NURSE = "bench_nurse"
PASSWORD = "bench password 1"
TARGETS_MS = {"board": 300, "patient_7d": 500}


def prepare_ward(url: str, ward: int, alerts: int, at) -> None:
    """Put the first ``ward`` patients in the ward's team, open ``alerts`` alerts among them, add the nurse."""
    from care.auth import provision_clinician
    from kidjamo.warehouse.database import connect

    with connect(url, application_name="bench-care") as connection:
        connection.execute("UPDATE kidjamo.patients SET care_team = %s WHERE patient_id <= %s",
                           (WARD, f"patient-{ward:06d}"))
        severities = ["critical", "high", "warning", "info"]
        connection.execute(
            """
            INSERT INTO kidjamo.alerts (patient_id, rule_id, rule_version, severity, first_reading_at, last_reading_at, evidence)
            SELECT format('patient-%%s', lpad((1 + (i * 7) %% %(ward)s)::text, 6, '0')), 'bench_rule_' || i, '1',
                   (%(severities)s::text[])[1 + i %% 4], %(at)s - interval '20 minutes', %(at)s,
                   jsonb_build_object('rule', jsonb_build_object('title', 'Bench rule ' || i, 'condition', 'bench'),
                                      'values', jsonb_build_object('spo2', 88))
            FROM generate_series(0, %(alerts)s - 1) AS i
            """, {"ward": ward, "severities": severities, "at": at, "alerts": alerts})
        provision_clinician(connection, NURSE, [WARD], PASSWORD)


def app_login(url: str) -> str:
    """The app's own login (kidjamo_authenticator) on the benchmark's database, with a fresh password."""
    import secrets

    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from kidjamo.warehouse.database import connect
    from kidjamo.warehouse.roles import AUTHENTICATOR, scram_verifier

    password = secrets.token_urlsafe(24)
    with connect(url, application_name="bench-care") as connection:
        connection.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(AUTHENTICATOR),
                                                                       sql.Literal(scram_verifier(password))))
    return make_conninfo(url, user=AUTHENTICATOR, password=password)


def measure(url: str, now, repeat: int, ward: int) -> dict:
    from fastapi.testclient import TestClient

    from care.app import create_app
    from kidjamo.settings import Settings

    settings = Settings(database_url=url, care_cookie_secure=False)
    client = TestClient(create_app(app_login(url), settings, clock=lambda: now))
    token = client.get("/login").cookies["kidjamo_care_login"]
    response = client.post("/login", data={"login": NURSE, "password": PASSWORD, "csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    pages = {"board": "/board", "patient_6h": "/patients/patient-000001?window=6h",
             "patient_24h": "/patients/patient-000001?window=24h", "patient_7d": "/patients/patient-000001?window=7d",
             "alert_queue": "/alerts"}
    results = {}
    for name, path in pages.items():
        timings = []
        for index in range(repeat + 1):  # the first request warms the caches and is not counted
            started = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            if index:
                timings.append(elapsed * 1000)
        results[name] = {"median_ms": statistics.median(timings), "max_ms": max(timings), "bytes": len(response.content)}
    listed = client.get("/board").text.count('data-patient="')
    assert listed == ward, f"the board lists {listed} patients, expected {ward}"
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="days of history")
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--ward", type=int, default=200, help="patients of the measured care team")
    parser.add_argument("--alerts", type=int, default=40, help="open alerts on the ward")
    parser.add_argument("--repeat", type=int, default=15, help="measured requests per page")
    add_database_arguments(parser)
    args = parser.parse_args(argv)

    from kidjamo.warehouse.database import connect
    from transforms.load import load_measurements

    with fleet_database(args, "kidjamo-bench-care-") as (url, version):
        history_s = 0.0
        for day in range(args.days):
            history_s += load_history_day(url, day, args.sensors)
            print(f"  day {day + 1} of history loaded ({history_s:.0f} s so far)", flush=True)
        minute = HISTORY_START + timedelta(days=args.days) - MEASURED_GAP + timedelta(minutes=1)
        load_measurements(url, minute_batch(args.sensors, minute, np.random.default_rng(7)), "bench-care-latest")
        now = minute + timedelta(seconds=20)
        prepare_ward(url, args.ward, args.alerts, now)
        results = measure(url, now, args.repeat, args.ward)
        with connect(url) as connection:
            rows = connection.execute("SELECT count(*) FROM kidjamo.measurements").fetchone()[0]
        print(f"\nCare-team pages, server time in process ({rows:,} readings: {args.days} days of {args.sensors} sensors; "
              f"ward of {args.ward} patients, {args.alerts} open alerts): PostgreSQL {version}, {platform.machine()}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, median of {args.repeat}")
        print(f"{'page':<14} {'median ms':>10} {'max ms':>8} {'target ms':>10} {'KiB':>7}")
        for name, result in results.items():
            target = TARGETS_MS.get(name)
            print(f"{name:<14} {result['median_ms']:>10.1f} {result['max_ms']:>8.1f} {target or '':>10} {result['bytes'] / 1024:>7.0f}")
        return results


if __name__ == "__main__":
    main()
