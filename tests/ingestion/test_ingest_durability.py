"""Durability: SIGKILL while the simulator posts loses no acknowledged reading and duplicates none."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from ingestion.landing_writer import LandingWriter
from ingestion.simulator import HttpSender, run_simulation


def test_sigkill_and_restart_keep_every_acknowledged_reading_exactly_once(start_service, fleet, secrets, tmp_path):
    service = start_service(rate_per_device=10_000, burst_per_device=10_000, flush_interval_ms=20)
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=3)
    end = start + timedelta(minutes=60)  # 12 devices x 120 readings
    outcome: dict = {}

    async def simulate():
        sender = HttpSender(service.url, secrets, spool_dir=tmp_path / "spool", max_attempts=3, first_backoff_s=0.2)
        await run_simulation(fleet, sender, start=start, end=end, realtime=False, step_s=30)
        for _ in range(100):  # drain the spool once the service is back
            if sender.stats.spooled == 0:
                break
            await sender.send([])
            await asyncio.sleep(0.2)
        await sender.close()
        outcome["stats"] = sender.stats

    runner = threading.Thread(target=lambda: asyncio.run(simulate()))
    runner.start()
    time.sleep(2.0)
    landing_before_kill = len(service.landing_readings())
    service.kill()
    time.sleep(1.0)
    service.start()
    runner.join(timeout=240)
    assert not runner.is_alive()

    stats = outcome["stats"]
    landed = Counter(reading["message_id"] for reading in service.landing_readings())
    generated = {r["message_id"] for r in fleet.readings(start, end)}
    assert 0 < landing_before_kill < len(generated), "the kill must happen while the simulator posts"
    assert stats.retries > 0, "the simulator must have met the dead service"
    assert set(stats.acknowledged_ids) == generated  # nothing left behind in the spool
    assert {message_id: n for message_id, n in landed.items() if n != 1} == {}
    assert set(landed) == generated


def _writer(lake, state_dir) -> LandingWriter:
    return LandingWriter(lake, state_dir, flush_interval_s=0.01)


def test_a_file_written_before_its_commit_line_is_still_remembered_after_a_crash(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    path = writer._write([b'{"message_id": "m-1"}\n'], ["m:device-1|m-1"])
    journal = next((tmp_path / "journal").glob("journal-*.log"))
    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n")  # the crash came after the rename, before the commit line
    restarted = _writer(lake, tmp_path)
    assert restarted.recover() == 1
    assert restarted.is_known(("m:device-1|m-1",))
    assert lake.exists(path)


def test_an_intent_whose_file_never_landed_is_forgotten_after_a_crash(lake, tmp_path):
    (tmp_path / "journal").mkdir()
    segment = tmp_path / "journal" / f"journal-{int(time.time()) // 600}.log"
    intent = {"intent": "landing/vitals/dt=2026-11-27/hh=10/mm=00/ingest-x-0000001.ndjson", "t": time.time(), "keys": ["m:device-1|m-2"]}
    segment.write_text(json.dumps(intent) + "\n" + '{"intent": "landing/vit')  # and a torn last line
    restarted = _writer(lake, tmp_path)
    assert restarted.recover() == 0
    assert not restarted.is_known(("m:device-1|m-2",))


def test_a_file_already_moved_to_raw_counts_as_landed(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    path = writer._write([b'{"message_id": "m-3"}\n'], ["m:device-1|m-3"])
    lake.write_bytes("raw/" + path.split("/", 1)[1], lake.read_bytes(path))
    lake.delete(path)
    journal = next((tmp_path / "journal").glob("journal-*.log"))
    journal.write_text(journal.read_text().splitlines()[0] + "\n")
    restarted = _writer(lake, tmp_path)
    restarted.recover()
    assert restarted.is_known(("m:device-1|m-3",))
