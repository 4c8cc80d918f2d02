"""Durability: SIGKILL while the simulator posts loses no acknowledged reading and duplicates none."""

from __future__ import annotations

import asyncio
import json
import posixpath
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from ingestion.landing_writer import LandingWriter, RecentKeys
from ingestion.simulator.senders import HttpSender, run_simulation


def test_sigkill_and_restart_keep_every_acknowledged_reading_exactly_once(start_service, fleet, secrets, tmp_path):
    service = start_service(rate_per_device=10_000, burst_per_device=10_000, flush_interval_ms=20)
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=3)
    end = start + timedelta(minutes=60)  # 12 devices x 120 readings
    outcome: dict = {}

    async def simulate():
        sender = HttpSender(service.url, secrets, spool_dir=tmp_path / "spool", max_attempts=3, first_backoff_s=0.2)
        await run_simulation(fleet, sender, start=start, end=end, realtime=False, step_s=30)
        await sender.drain_spool(attempts=100, pause_s=0.2)  # once the service is back
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
    service.stop()  # publishes the last minute; the check below must not race a publication

    stats = outcome["stats"]
    landed = Counter(reading["message_id"] for reading in service.landing_readings())
    generated = {r["message_id"] for r in fleet.readings(start, end)}
    assert 0 < landing_before_kill < len(generated), "the kill must happen while the simulator posts"
    assert stats.retries > 0, "the simulator must have met the dead service"
    assert set(stats.acknowledged_ids) == generated  # nothing left behind in the spool
    assert {message_id: n for message_id, n in landed.items() if n != 1} == {}
    assert set(landed) == generated
    assert all(posixpath.basename(path).startswith("ingest-") for path in service.landing_files())  # no part left behind
    # nor a temporary file of a write the kill cut short (the restarted writer deletes them)
    assert [f.path for f in service.lake.list_files("landing/vitals") if f.path.endswith(".tmp")] == []


def _writer(lake, state_dir) -> LandingWriter:
    """A writer as a (re)started service has it: journal replayed."""
    writer = LandingWriter(lake, state_dir, flush_interval_s=0.01)
    writer.recover()
    return writer


def _files(lake) -> list[str]:
    return [posixpath.basename(f.path) for f in lake.list_files("landing/vitals")]


def test_closed_minutes_are_published_as_one_file_and_their_parts_removed(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    writer._write([b'{"message_id": "m-1"}\n'], ["m:device-1|m-1"])
    writer._write([b'{"message_id": "m-2"}\n'], ["m:device-1|m-2"])
    assert writer.publish_closed_minutes(time.time() - 120) == []  # the minute is still open
    [published] = writer.publish_closed_minutes(time.time() + 120)
    assert _files(lake) == [posixpath.basename(published)]
    assert lake.read_bytes(published) == b'{"message_id": "m-1"}\n{"message_id": "m-2"}\n'


def test_a_part_written_before_its_commit_line_is_remembered_and_published_after_a_crash(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    writer._write([b'{"message_id": "m-1"}\n'], ["m:device-1|m-1"])
    journal = next((tmp_path / "journal").glob("journal-*.log"))
    journal.write_text(journal.read_text().splitlines()[0] + "\n")  # the crash came after the rename, before the commit line
    restarted = _writer(lake, tmp_path)
    assert restarted.is_known(("m:device-1|m-1",))
    [name] = _files(lake)
    assert name.startswith(f"ingest-{writer.instance}-") and name.endswith("-recovered.ndjson")


def test_an_intent_whose_part_never_landed_is_forgotten_after_a_crash(lake, tmp_path):
    (tmp_path / "journal").mkdir()
    segment = tmp_path / "journal" / f"journal-{int(time.time()) // 600}.log"
    intent = {"intent": "landing/vitals/dt=2026-11-27/hh=10/mm=00/_ingest-x-0000001.ndjson", "t": time.time(), "keys": ["m:device-1|m-2"]}
    segment.write_text(json.dumps(intent) + "\n" + '{"intent": "landing/vit')  # and a torn last line
    restarted = _writer(lake, tmp_path)
    assert not restarted.is_known(("m:device-1|m-2",))
    assert _files(lake) == []


def test_a_publication_cut_short_after_the_file_is_not_repeated(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    part = writer._write([b'{"message_id": "m-3"}\n'], ["m:device-1|m-3"])
    target = posixpath.dirname(part) + f"/ingest-{writer.instance}-x.ndjson"
    writer._journal({"publish": target, "parts": [part]}, sync=True)
    lake.write_bytes(target, lake.read_bytes(part))  # the crash came before the parts were deleted
    restarted = _writer(lake, tmp_path)
    assert _files(lake) == [posixpath.basename(target)]
    assert restarted.is_known(("m:device-1|m-3",))


def test_a_publication_cut_short_before_the_file_is_finished_on_restart(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    part = writer._write([b'{"message_id": "m-4"}\n'], ["m:device-1|m-4"])
    target = posixpath.dirname(part) + f"/ingest-{writer.instance}-x.ndjson"
    writer._journal({"publish": target, "parts": [part]}, sync=True)
    _writer(lake, tmp_path)
    assert _files(lake) == [posixpath.basename(target)]
    assert lake.read_bytes(target) == b'{"message_id": "m-4"}\n'


def test_parts_of_another_service_instance_are_left_alone(lake, tmp_path):
    other = _writer(lake, tmp_path / "other-instance")
    other._write([b'{"message_id": "m-5"}\n'], ["m:device-1|m-5"])
    _writer(lake, tmp_path / "this-instance")
    assert [name.startswith("_ingest-") for name in _files(lake)] == [True]


def test_a_running_writer_publishes_a_minute_once_it_closes(lake, tmp_path):
    async def scenario() -> list[str]:
        writer = _writer(lake, tmp_path)
        await writer.start()
        assert await writer.submit([(("m:device-1|m-6",), b'{"message_id": "m-6"}\n')]) == [True]
        [(minute, parts)] = list(writer._parts.items())
        writer._parts = {minute - timedelta(minutes=5): parts}  # as if that minute had ended
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not writer._parts and not writer._publishing:
                break
        files = _files(lake)
        await writer.stop()
        return files

    files = asyncio.run(scenario())
    assert len(files) == 1 and files[0].startswith("ingest-")


def test_journal_segments_older_than_the_dedupe_window_are_deleted(lake, tmp_path):
    writer = _writer(lake, tmp_path)
    old = tmp_path / "journal" / f"journal-{int(time.time() - 3600) // 600}.log"
    old.write_text('{"intent": "landing/vitals/dt=2026-11-27/hh=09/mm=00/_ingest-x-0000001.ndjson", "t": 0, "keys": ["k"]}\n')
    writer._write([b'{"message_id": "m-7"}\n'], ["m:device-1|m-7"])
    writer._prune_journal(time.time() - writer.dedupe_window_s)
    assert not old.exists() and len(list((tmp_path / "journal").glob("journal-*.log"))) == 1


def test_idempotency_keys_expire_after_the_window_a_minute_at_a_time():
    keys = RecentKeys(window_s=120)
    keys.add_all(["old"], 1_000_000.0)
    keys.add_all(["new"], 1_000_100.0)
    keys.forget_before(1_000_100.0 - 120)
    assert "old" in keys and "new" in keys
    keys.forget_before(1_000_100.0)
    assert "old" not in keys and "new" in keys and len(keys) == 1
