"""The right to erasure against the real pipeline, database and ingestion service: readings posted just
before and just after the erasure, the writer's unpublished parts and journal, gates/,
quality/validations/, kidjamo.data_quality_results, Data Docs, a malformed record, and a scan that
finds no byte of the patient's identifiers anywhere afterwards."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest

from ingestion.auth import signed_headers
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from tests.ingestion.conftest import ServiceProcess
from transforms.rights import ErasureIncomplete, erase_patient
from transforms.pipeline import process_interval

pytestmark = pytest.mark.slow
ERASED, KEPT = 0, 1  # fleet indexes: the patient erased, a patient who stays
KEY = "erasure-test-pseudonym-key-of-32-bytes-or-more"


def token(value: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![A-Za-z0-9_-])" + re.escape(value.encode()) + rb"(?![A-Za-z0-9_-])")


def files_naming(root: Path, value: str) -> list[str]:
    """Every file under ``root`` whose bytes (decompressed Parquet values included) name ``value``."""
    import pyarrow.parquet as pq

    pattern, found = token(value), []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".parquet":
            data = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        if pattern.search(data) or pattern.search(str(path).encode()):
            found.append(str(path.relative_to(root)))
    return found


def rows_naming(url: str, value: str) -> list[str]:
    with psycopg.connect(url) as connection:
        relations = [row[0] for row in connection.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('kidjamo', 'analytics') AND c.relkind IN ('r', 'p', 'm', 'v') AND NOT c.relispartition")]
        pattern = rf"(?<![A-Za-z0-9_-]){re.escape(value)}(?![A-Za-z0-9_-])"
        return [relation for relation in relations
                if connection.execute(f"SELECT count(*) FROM {relation} t WHERE t::text ~ %s", (pattern,)).fetchone()[0]]


def post(service: ServiceProcess, device_id: str, secret: str, reading: dict) -> httpx.Response:
    body = json.dumps(reading).encode()
    return httpx.post(f"{service.url}/v1/vitals", content=body, timeout=10,
                      headers={"Content-Type": "application/json", **signed_headers(device_id, secret, body, precise=True)})


def fleet_readings(fleet, start: datetime, minutes: int = 1) -> list[dict]:
    return fleet.readings(start, start + timedelta(minutes=minutes))


@pytest.fixture
def history(ingest_database, fleet, secrets, tmp_path):
    """A lake and database holding a processed minute of both patients, a malformed record naming the
    erased patient, a data-quality result and Data Docs that name them."""
    lake = Lake(f"file://{tmp_path / 'lake'}")
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=3)
    readings = [r for r in fleet_readings(fleet, minute - timedelta(minutes=1)) if r["device_id"] in fleet.device_ids[:2]]
    readings[0]["vitals"]["spo2"] = 80.0  # a critical reading: an alert, its events and notifications
    lines = [json.dumps(r).encode() for r in readings]
    erased_device = fleet.device_ids[ERASED].encode()
    lines.append(b'{"device_id": "' + erased_device + b'", "patient_id": "' + fleet.patient_ids[ERASED].encode() + b'", "vitals": {')
    lake.write_bytes(f"landing/vitals/{minute_partition(minute)}/sensor-batch.ndjson", b"\n".join(lines) + b"\n")
    process_interval(minute, minute + timedelta(minutes=1), lake=lake, database_url=ingest_database, run_id="erasure-history")
    lake.write_bytes("quality/validations/bronze_vitals/extra.json",
                     json.dumps({"partial_unexpected_list": [fleet.device_ids[ERASED], fleet.device_ids[KEPT]]}).encode())
    with psycopg.connect(ingest_database) as connection:
        connection.execute("INSERT INTO kidjamo.data_quality_results (run_id, suite, interval_start, interval_end, success, evaluated,"
                           " failed_rows, results) VALUES ('erasure-dq', 'silver_vitals', %s, %s, false, 2, 1, %s)",
                           (minute, minute + timedelta(minutes=1),
                            json.dumps([{"unexpected": [fleet.patient_ids[ERASED], fleet.patient_ids[KEPT]]}])))
    docs = tmp_path / "gx" / "uncommitted"
    (docs / "data_docs").mkdir(parents=True)
    (docs / "data_docs" / "index.html").write_text(f"<td>{fleet.device_ids[ERASED]}</td>")
    return lake, docs


def test_erasure_leaves_no_identifier_and_readings_after_it_are_refused(history, ingest_database, ingest_login_url, fleet, secrets, tmp_path):
    lake, docs = history
    erased_patient, erased_device = fleet.patient_ids[ERASED], fleet.device_ids[ERASED]
    kept_device = fleet.device_ids[KEPT]
    assert files_naming(Path(lake.root_url.removeprefix("file://")), erased_device)  # the history names them
    (tmp_path / "service").mkdir()
    service = ServiceProcess(tmp_path / "service", lake, ingest_login_url, {}).start()
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        before = [r for r in fleet_readings(fleet, now - timedelta(minutes=1)) if r["device_id"] in (erased_device, kept_device)]
        for reading in before:  # just before: acknowledged, so in the writer's unpublished parts and journal
            assert post(service, reading["device_id"], secrets[reading["device_id"]], reading).status_code == 202
        journal = service.home / "ingest" / "journal"
        assert any(token(erased_device).search(p.read_bytes()) for p in journal.glob("journal-*.log"))

        summary = erase_patient(erased_patient, database_url=ingest_database, lake=lake, pseudonym_key=KEY, data_docs_dirs=[docs],
                                writer_grace_s=1.0)

        after = next(r for r in fleet_readings(fleet, now) if r["device_id"] == erased_device)
        refused = post(service, erased_device, secrets[erased_device], after)  # just after: at once
        assert refused.status_code == 401
        kept_after = next(r for r in fleet_readings(fleet, now) if r["device_id"] == kept_device)
        assert post(service, kept_device, secrets[kept_device], kept_after).status_code == 202
        assert not any(token(erased_device).search(p.read_bytes()) for p in journal.glob("journal-*.log"))
    finally:
        service.stop()  # publishes every part it held: the erased patient must not come back with them

    assert summary["verified"] and summary["leftovers"] == []
    assert summary["lake"]["unreadable_files"] == []
    assert summary["local"]["data_docs_removed"] == [str(docs)]
    published = sorted({f.path.split("/ingest-")[0] for f in lake.list_files("landing/vitals") if "/ingest-" in f.path})
    for partition in published:  # the minute after: the pipeline takes the published file into raw and onwards
        start = datetime.strptime(partition.removeprefix("landing/vitals/"), "dt=%Y-%m-%d/hh=%H/mm=%M").replace(tzinfo=timezone.utc)
        process_interval(start, start + timedelta(minutes=1), lake=lake, database_url=ingest_database, run_id=f"after-{start:%H%M}")

    lake_root = Path(lake.root_url.removeprefix("file://"))
    for identifier in (erased_patient, erased_device):
        assert files_naming(lake_root, identifier) == []
        assert files_naming(service.home, identifier) == []
        assert rows_naming(ingest_database, identifier) == []
    assert files_naming(lake_root, kept_device)  # only the erased patient went
    with psycopg.connect(ingest_database) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.measurements WHERE device_id = %s", (kept_device,)).fetchone()[0] > 0
        event = connection.execute("SELECT patient_id, detail FROM kidjamo.audit_log WHERE action = 'patient_erasure'").fetchone()
    assert event[0] == summary["reference"] and event[1]["verified"] is True


def test_a_file_that_cannot_be_read_is_reported_and_the_rest_is_still_erased(ingest_database, fleet, secrets, tmp_path):
    lake = Lake(f"file://{tmp_path / 'lake'}")
    patient, device = fleet.patient_ids[2], fleet.device_ids[2]
    lake.write_bytes("silver/vitals/dt=2026-11-27/hh=10/mm=00/broken.parquet", b"PAR1 not really a parquet file " + device.encode())
    lake.write_bytes("raw/vitals/dt=2026-11-27/hh=10/mm=00/records.ndjson",
                     b'{"device_id": "' + device.encode() + b'", "patient_id": "' + patient.encode() + b'"}\n{not json ' + device.encode() + b"\n")
    with pytest.raises(ErasureIncomplete, match="broken.parquet") as raised:
        erase_patient(patient, database_url=ingest_database, lake=lake, pseudonym_key=KEY, writer_grace_s=0)
    assert len(raised.value.leftovers) == 1  # only the unreadable file: the records around it were erased
    records = lake.read_bytes("raw/vitals/dt=2026-11-27/hh=10/mm=00/records.ndjson").splitlines()
    assert records == [b'{"erased":true}', b'{"erased":true}']


def test_a_pipeline_run_waits_for_an_erasure_in_progress(ingest_database):
    import threading

    from transforms.rights import ERASURE_LOCK_ID, pipeline_run_guard

    entered = threading.Event()
    with psycopg.connect(ingest_database, autocommit=True) as erasure:
        erasure.execute("SELECT pg_advisory_lock(%s)", (ERASURE_LOCK_ID,))

        def run() -> None:
            with pipeline_run_guard(ingest_database):
                entered.set()

        runner = threading.Thread(target=run)
        runner.start()
        assert not entered.wait(1.0)  # held back while the erasure holds its lock
        erasure.execute("SELECT pg_advisory_unlock(%s)", (ERASURE_LOCK_ID,))
        assert entered.wait(5.0)
        runner.join()
