"""A minute split into shards (KIDJAMO_SHARDS) gives the same lake content, warehouse and alerts as one shard.

Two landed minutes of a small fleet with what the shards must keep together: readings duplicated
across raw files (within the minute and from the previous minute), a patient with two devices, a
device flooding the batch with bad readings, a device claiming another patient, unparseable and
out-of-range records, and hypoxic readings that open and update alerts. Each shard count runs in its
own lake and database; the comparison is on rows, not files.
"""

from __future__ import annotations

import copy
import csv
import json
import posixpath
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.partitions import is_layer_file
from kidjamo.lake.schema import BRONZE
from kidjamo.lake.storage import Lake
from tests.databases import migrated_database
from tests.layers.helpers import land
from transforms.pipeline import Interval, process_interval, step_to_bronze, step_to_raw
from transforms.registry import import_registry

FIRST = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
SECOND = FIRST + timedelta(minutes=1)
PATIENTS = 24
LAKE_LAYERS = ("bronze", "quarantine", "gates", "silver", "gold")
_SHARD_LABEL = re.compile(r"\.shard-[^.]+-of-\d+(?:\.from-\d+)?(?=\.[^.]+$)")
#: Columns PostgreSQL fills with the wall clock (now()), different between any two runs.
WALL_CLOCK = {"loaded_at", "quarantined_at", "created_at", "updated_at", "detected_at", "opened_at",
              "severity_since", "next_attempt_at", "claimed_at", "sent_at", "event_at", "silent_seconds", "refreshed_at"}


def _registry_csv(fleet: Fleet, path: Path) -> tuple[Path, str]:
    """The fleet's registry plus a second wearable for the first (hypoxic) patient."""
    rows = fleet.registry_rows()
    second = dict(rows[0], device_id="device-second-wearable")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, second])
    return path, second["device_id"]


def _minute(fleet: Fleet, arrival: datetime, second_device: str, earlier: list[dict]) -> list[list]:
    """One minute's landing files: the fleet's readings and every awkward case, spread over seven files."""
    readings = fleet.readings(arrival - timedelta(minutes=1), arrival, hypoxia_patient=True)
    rows = fleet.registry_rows()
    hypoxic = [r for r in readings if r["patient_id"] == rows[0]["patient_id"]]
    extra = []
    for reading in hypoxic:  # the hypoxic patient's second wearable, a few seconds later
        other = copy.deepcopy(reading)
        other["device_id"] = second_device
        other["timestamp"] = other["timestamp"].replace("Z", "").rsplit(":", 1)[0] + ":07Z"
        other.pop("message_id", None)
        extra.append(other)
    flooder = rows[1]
    for second in range(12):  # 12 readings with SpO2 out of range: the device floods the batch
        bad = copy.deepcopy(next(r for r in readings if r["device_id"] == flooder["device_id"]))
        bad["timestamp"] = f"{arrival - timedelta(seconds=59 - second):%Y-%m-%dT%H:%M:%S}Z"
        bad["vitals"]["spo2"] = 150
        bad.pop("message_id", None)
        extra.append(bad)
    claimer = copy.deepcopy(next(r for r in readings if r["device_id"] == rows[2]["device_id"]))
    claimer["patient_id"] = rows[3]["patient_id"]  # device_patient_mismatch
    claimer["timestamp"] = claimer["timestamp"].replace("Z", "").rsplit(":", 1)[0] + ":03Z"
    unknown = dict(copy.deepcopy(readings[0]), device_id="device-nobody-knows")
    no_device = {k: v for k, v in copy.deepcopy(readings[4]).items() if k != "device_id"}
    everything = readings + extra + [claimer, unknown, no_device]
    files = [everything[part::6] for part in range(6)]
    files.append([*readings[:5], *earlier, "{not json", "[1, 2]"])  # duplicates within and across minutes
    return files


def _lake_rows(lake: Lake) -> dict:
    """Every derived layer's rows, by (layer, minute partition, file name without its shard label)."""
    groups: dict[tuple[str, str, str], list[pd.DataFrame]] = {}
    for layer in LAKE_LAYERS:
        for lake_file in lake.list_files(layer):
            if not lake_file.path.endswith(".parquet"):
                continue
            folder, base = posixpath.split(lake_file.path)
            logical = _SHARD_LABEL.sub("", base)
            assert is_layer_file(base, logical)
            groups.setdefault((layer, folder, logical), []).append(lake.read_parquet([lake_file.path]).to_pandas())
    rows = {}
    for key, frames in groups.items():
        frame = pd.concat(frames, ignore_index=True)
        frame = frame[sorted(frame.columns)]
        order = frame.astype(str).sort_values(list(frame.columns)).index
        rows[key] = frame.loc[order].reset_index(drop=True)
    return rows


def _warehouse(url: str) -> dict:
    """The warehouse tables a minute writes, without identity numbers or wall-clock columns."""
    queries = {
        "measurements": "SELECT * FROM kidjamo.measurements",
        "quarantine": "SELECT * FROM kidjamo.quarantine",
        "device_status": "SELECT * FROM kidjamo.device_status",
        "device_last_seen": "SELECT * FROM kidjamo.device_last_seen",
        "device_incidents": "SELECT * FROM kidjamo.device_incidents",
        "alerts": "SELECT * FROM kidjamo.alerts",
        "alert_readings": "SELECT a.patient_id, a.rule_id, r.device_id, r.measured_at, r.raw_file, r.record_index "
                          "FROM kidjamo.alert_readings AS r JOIN kidjamo.alerts AS a USING (alert_id)",
        "alert_events": "SELECT a.patient_id, a.rule_id, e.event_type, e.severity, e.audience, e.actor, e.details::text, "
                        "e.run_id FROM kidjamo.alert_events AS e JOIN kidjamo.alerts AS a USING (alert_id)",
        "notifications": "SELECT a.patient_id, a.rule_id, e.event_type, n.channel, n.status, n.attempts "
                         "FROM kidjamo.notifications AS n JOIN kidjamo.alert_events AS e USING (event_id) "
                         "JOIN kidjamo.alerts AS a USING (alert_id)",
        "views": "SELECT * FROM analytics.device_health",
    }
    state = {}
    with psycopg.connect(url) as connection:
        for name, query in queries.items():
            cursor = connection.execute(query)
            columns = [c.name for c in cursor.description]
            frame = pd.DataFrame(cursor.fetchall(), columns=columns)
            frame = frame.drop(columns=[c for c in columns if c in WALL_CLOCK or c == "alert_id"])
            frame = frame.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
            state[name] = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
    return state


def _accounting(url: str, run_prefix: str) -> list[dict]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT interval_start, counts FROM kidjamo.pipeline_runs WHERE run_id LIKE %s AND counts ? 'accounting' "
            "OR (run_id LIKE %s AND step = 'accounting') ORDER BY interval_start",
            (f"{run_prefix}%", f"{run_prefix}%")).fetchall()
    return [counts.get("accounting", {key: value for key, value in counts.items() if key != "duration_s"})
            for _, counts in rows]


@pytest.fixture(scope="module")
def shard_runs(postgres_server, tmp_path_factory):
    """The same two landed minutes processed with 1 and with 4 shards, each in its own lake and database."""
    fleet = Fleet.generate(PATIENTS, seed=11)
    registry_csv, second_device = _registry_csv(fleet, tmp_path_factory.mktemp("registry") / "registry.csv")
    first = _minute(fleet, FIRST, second_device, earlier=[])
    earlier = [line for line in first[0][:3] if isinstance(line, dict)]
    second = _minute(fleet, SECOND, second_device, earlier=earlier)
    results = {}
    for shards in (1, 4):
        lake = Lake(f"file://{tmp_path_factory.mktemp(f'lake{shards}')}")
        with migrated_database(postgres_server, f"t_shards_{shards}") as url:
            import_registry(registry_csv, url, pseudonym_key="test-key")
            counts = []
            for arrival, files in ((FIRST, first), (SECOND, second)):
                for index, lines in enumerate(files):
                    land(lake, f"sensors-{index}.ndjson", lines, minute=arrival)
                counts.append(process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=url,
                                               run_id=f"shards-{arrival:%H%M}", shards=shards))
            results[shards] = {"lake": lake, "counts": counts, "lake_rows": _lake_rows(lake),
                               "warehouse": _warehouse(url), "accounting": _accounting(url, "shards-")}
    return results


def test_four_shards_write_the_same_lake_rows_as_one(shard_runs):
    one, four = shard_runs[1]["lake_rows"], shard_runs[4]["lake_rows"]
    assert one.keys() == four.keys()
    for key in one:
        pd.testing.assert_frame_equal(one[key], four[key], obj=str(key))
    silver = [frame for (layer, _, name), frame in one.items() if layer == "silver"]
    assert sum(len(frame) for frame in silver) > 2 * PATIENTS


def test_four_shards_give_the_same_warehouse_alerts_and_evidence_as_one(shard_runs):
    one, four = shard_runs[1]["warehouse"], shard_runs[4]["warehouse"]
    for table in one:
        pd.testing.assert_frame_equal(one[table], four[table], obj=table)
    assert (one["alerts"]["rule_id"] == "hypoxia_emergency").any()
    assert len(one["alert_readings"]) > 0
    assert len(one["device_incidents"]) == 2  # the flooding device, in both minutes


def test_four_shards_keep_the_accounting_of_every_batch(shard_runs):
    one, four = shard_runs[1]["accounting"], shard_runs[4]["accounting"]
    assert one == four and len(one) == 2
    for counts in four:
        assert counts["raw_records"] == counts["bronze"] + counts["bronze_quarantined"]
        assert counts["bronze"] == counts["silver"] + counts["rejected"] + counts["duplicates"]
        assert counts["duplicates"] > 0 and counts["bronze_quarantined"] > 0


def test_four_shards_split_the_minute_and_file_it_by_shard(shard_runs):
    counts = shard_runs[4]["counts"][0]
    routed = [shard["bronze_rows_to_shard"] for shard in counts["to_bronze"]["by_shard"]]
    per_shard = [sum(column) for column in zip(*routed)]
    assert sum(per_shard) == counts["to_bronze"]["bronze_rows"]
    assert sum(1 for rows in per_shard if rows) >= 3  # the fleet's patients spread over the shards
    silver_files = [f.path for f in shard_runs[4]["lake"].list_files("silver")]
    assert all(".shard-" in path for path in silver_files)
    assert not any(".shard-" in f.path for f in shard_runs[1]["lake"].list_files("silver"))


def test_a_minute_reprocessed_with_another_shard_count_keeps_no_rows_of_the_old_layout(fresh_database_url, lake,
                                                                                         tmp_path):
    fleet = Fleet.generate(6, seed=3)
    registry_csv, _ = _registry_csv(fleet, tmp_path / "registry.csv")
    import_registry(registry_csv, fresh_database_url, pseudonym_key="test-key")
    land(lake, "sensors.ndjson", fleet.readings(FIRST - timedelta(minutes=1), FIRST), minute=FIRST)
    end = FIRST + timedelta(minutes=1)
    before = None
    for shards in (1, 3, 1):
        process_interval(FIRST, end, lake=lake, database_url=fresh_database_url, run_id=f"relayout-{shards}", shards=shards)
        rows = _lake_rows(lake)
        files = {posixpath.basename(f.path) for layer in LAKE_LAYERS for f in lake.list_files(layer)}
        layouts = {int(m.group(1)) if (m := re.search(r"-of-(\d+)", name)) else 1 for name in files}
        assert layouts == {shards}
        if before is not None:
            assert rows.keys() == before.keys()
            for key in rows:
                pd.testing.assert_frame_equal(rows[key].drop(columns=["run_id"], errors="ignore"),
                                              before[key].drop(columns=["run_id"], errors="ignore"), obj=str(key))
        before = rows


def test_a_bronze_shard_rerun_alone_rewrites_only_its_own_rows(fresh_database_url, lake, tmp_path):
    fleet = Fleet.generate(8, seed=5)
    registry_csv, _ = _registry_csv(fleet, tmp_path / "registry.csv")
    import_registry(registry_csv, fresh_database_url, pseudonym_key="test-key")
    readings = fleet.readings(FIRST - timedelta(minutes=1), FIRST)
    for part in range(4):
        land(lake, f"sensors-{part}.ndjson", readings[part::4], minute=FIRST)
    interval = Interval.for_task(FIRST, FIRST + timedelta(minutes=1), lake=lake, database_url=fresh_database_url,
                                 run_id="rerun", shards=2)
    step_to_raw(interval.for_shard(None))
    first = [step_to_bronze(interval.for_shard(shard)) for shard in range(2)]
    again = step_to_bronze(interval.for_shard(1))
    assert again["bronze_rows_to_shard"] == first[1]["bronze_rows_to_shard"]
    assert interval.for_shard(None).read("bronze", "part-0.parquet", BRONZE).num_rows == len(readings)
