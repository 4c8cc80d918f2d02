"""Faults in the landing writer: failed publications, a clock stepping back, a crash mid-publication.

Each test injects the fault for real (a lake whose writes fail like a full disk, the writer's view
of the system clock stepped back, a journal left as a crash leaves it) and checks that every
acknowledged reading is in a landing file a pipeline run will still list: its own minute's
partition while that minute's run cannot have started, else the current minute's.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import time
import types
from datetime import datetime, timedelta, timezone

import pytest

import ingestion.landing_writer as landing_writer
from ingestion.landing_writer import LandingWriter
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake


class FullDiskLake(Lake):
    """A real local lake whose writes of published landing files fail (ENOSPC) while ``full`` is set."""

    full = False

    def write_bytes(self, path: str, data: bytes, *, durable: bool = True) -> None:
        if self.full and posixpath.basename(path).startswith("ingest-"):
            raise OSError(28, "No space left on device", path)
        super().write_bytes(path, data, durable=durable)


class SteppableClock:
    """Stands in for the ``time`` module of the writer: a wall clock the test can step, a real monotonic clock."""

    def __init__(self, wall: float):
        self.offset = wall - time.time()
        self.perf_counter = time.perf_counter
        self.monotonic = time.monotonic

    def time(self) -> float:
        return time.time() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


def _readings(lake: Lake) -> list[str]:
    """message_ids of every reading in a published landing file."""
    ids = []
    for lake_file in lake.list_files("landing/vitals"):
        if posixpath.basename(lake_file.path).startswith("ingest-"):
            ids += [json.loads(line)["message_id"] for line in lake.read_bytes(lake_file.path).splitlines() if line]
    return ids


def _published(lake: Lake) -> list[str]:
    return [f.path for f in lake.list_files("landing/vitals") if posixpath.basename(f.path).startswith("ingest-")]


def _line(message_id: str) -> bytes:
    return json.dumps({"message_id": message_id}).encode() + b"\n"


def _current_partition() -> str:
    return minute_partition(landing_writer._arrival_minute(time.time()))


def test_a_publication_retried_after_a_failure_goes_into_the_current_minute_and_readyz_reports_it(tmp_path):
    lake = FullDiskLake(f"file://{tmp_path / 'lake'}")
    states: list[str | None] = []

    async def scenario() -> None:
        writer = LandingWriter(lake, tmp_path / "state", flush_interval_s=0.01)
        writer.recover()
        await writer.start()
        lake.full = True
        assert await writer.submit([(("m:device-1|m-1",), _line("m-1"))]) == [True]
        [(minute, parts)] = list(writer._parts.items())
        writer._parts = {minute - timedelta(minutes=5): parts}  # as if that minute had ended 5 minutes ago
        for _ in range(100):
            await asyncio.sleep(0.05)
            if writer.publish_error:
                break
        states.append(writer.publish_error)
        lake.full = False
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not writer._parts and not writer._publishing:
                break
        states.append(writer.publish_error)
        await writer.stop()

    asyncio.run(scenario())
    assert states[0] is not None and "No space left on device" in states[0]
    assert states[1] is None
    [path] = _published(lake)
    assert f"/{_current_partition()}/" in path  # not the ended minute's partition, whose run is over
    assert _readings(lake) == ["m-1"]


def test_a_clock_stepping_back_never_overwrites_a_published_file(tmp_path, monkeypatch):
    lake = Lake(f"file://{tmp_path / 'lake'}")
    minute_start = (datetime.now(timezone.utc) - timedelta(minutes=10)).replace(second=0, microsecond=0).timestamp()
    clock = SteppableClock(minute_start + 20)
    monkeypatch.setattr(landing_writer, "time", clock)
    writer = LandingWriter(lake, tmp_path / "state")
    writer.recover()
    writer._write([_line("m-1")], ["m:device-1|m-1"])
    clock.step(40)  # 00:60, the minute closes and is published
    [first] = writer.publish_closed_minutes(clock.time())
    clock.step(-35)  # NTP steps the wall clock back to 00:25
    writer._write([_line("m-2")], ["m:device-1|m-2"])
    clock.step(40)
    writer.publish_closed_minutes(clock.time())
    writer.publish_closed_minutes(float("inf"))
    assert sorted(_readings(lake)) == ["m-1", "m-2"]
    assert lake.read_bytes(first) == _line("m-1")


def test_a_minute_published_twice_gets_a_second_file_not_an_overwrite(tmp_path):
    lake = Lake(f"file://{tmp_path / 'lake'}")
    writer = LandingWriter(lake, tmp_path / "state")
    writer.recover()
    writer._write([_line("m-1")], ["m:device-1|m-1"])
    [(minute, parts)] = list(writer._parts.items())
    writer._publish(writer._minute_file(minute), parts)  # the minute's file, published
    del writer._parts[minute]
    writer._write([_line("m-2")], ["m:device-1|m-2"])  # a slow flush of the same minute ends after it
    writer.publish_closed_minutes(float("inf"))
    assert sorted(_readings(lake)) == ["m-1", "m-2"]


def test_a_publication_cut_short_in_an_ended_minute_is_finished_into_the_current_minute(tmp_path, monkeypatch):
    lake = Lake(f"file://{tmp_path / 'lake'}")
    clock = SteppableClock(time.time() - 600)
    monkeypatch.setattr(landing_writer, "time", clock)
    writer = LandingWriter(lake, tmp_path / "state")
    writer.recover()
    part = writer._write([_line("m-4")], ["m:device-1|m-4"])
    target = writer._minute_file(landing_writer._arrival_minute(clock.time()))
    writer._journal({"publish": target, "parts": [part]}, sync=True)  # the crash came before the file was written
    monkeypatch.setattr(landing_writer, "time", time)  # ten minutes later, the service restarts
    restarted = LandingWriter(lake, tmp_path / "state")
    restarted.recover()
    [path] = _published(lake)
    assert f"/{_current_partition()}/" in path
    assert _readings(lake) == ["m-4"]
    assert restarted.is_known(("m:device-1|m-4",))


def test_the_forward_clock_rides_out_a_step_back_of_the_wall_clock(monkeypatch):
    clock = SteppableClock(time.time())
    monkeypatch.setattr(landing_writer, "time", clock)
    forward = landing_writer.ForwardClock()
    before = forward()
    clock.step(-3600)
    after = forward()
    assert before <= after < before + 5


def test_readyz_reports_a_failed_publication_until_one_succeeds(tmp_path, ingest_database, fleet, secrets, new_reading, post):
    import socket
    import threading

    import httpx
    import uvicorn

    from ingestion.service import create_app
    from kidjamo.settings import Settings

    lake = FullDiskLake(f"file://{tmp_path / 'lake'}")
    app = create_app(Settings(home=tmp_path), ingest_database, lake, state_dir=tmp_path / "ingest")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    service = types.SimpleNamespace(url=url)
    try:
        for _ in range(300):
            if server.started:
                break
            time.sleep(0.05)
        assert httpx.get(f"{url}/readyz").status_code == 200
        lake.full = True
        reading = new_reading(4)
        assert post(service, fleet.device_ids[4], secrets[fleet.device_ids[4]], reading).status_code == 202
        writer = app.state.service.writer
        [(minute, parts)] = list(writer._parts.items())
        writer._parts = {minute - timedelta(minutes=5): parts}  # that minute has ended
        statuses = []
        for _ in range(100):
            ready = httpx.get(f"{url}/readyz")
            if ready.status_code == 503:
                statuses.append(ready.json()["landing"])
                break
            time.sleep(0.05)
        lake.full = False
        for _ in range(100):
            if httpx.get(f"{url}/readyz").status_code == 200:
                statuses.append("ok")
                break
            time.sleep(0.05)
    finally:
        server.should_exit = True
        thread.join(20)
    assert len(statuses) == 2 and "No space left on device" in statuses[0] and statuses[1] == "ok"
    assert _readings(lake) == [reading["message_id"]]


class CrashBeforeRenameLake(Lake):
    """A real local lake whose next part write dies after its temporary file is written, before the rename (a SIGKILL there)."""

    crash = False

    def write_bytes(self, path: str, data: bytes, *, durable: bool = True) -> None:
        if self.crash and posixpath.basename(path).startswith("_ingest-"):
            directory = posixpath.dirname(self.local_path(path))
            os.makedirs(directory, exist_ok=True)
            with open(posixpath.join(directory, f".{posixpath.basename(path)}.0123abcd.tmp"), "wb") as handle:
                handle.write(data)
            raise SystemExit("killed before the rename")
        super().write_bytes(path, data, durable=durable)


def test_a_part_cut_short_before_its_rename_is_deleted_at_restart_and_its_resend_lands_once(tmp_path):
    lake = CrashBeforeRenameLake(f"file://{tmp_path / 'lake'}")
    writer = LandingWriter(lake, tmp_path / "state")
    writer.recover()
    lake.crash = True
    with pytest.raises(SystemExit):
        writer._write([_line("m-5")], ["m:device-1|m-5"])  # never acknowledged: the request got no 202
    assert any(posixpath.basename(f.path).endswith(".tmp") for f in lake.list_files("landing/vitals"))
    lake.crash = False
    restarted = LandingWriter(lake, tmp_path / "state")
    restarted.recover()
    assert not restarted.is_known(("m:device-1|m-5",))  # the sensor's re-send is accepted ...
    restarted._write([_line("m-5")], ["m:device-1|m-5"])
    restarted.publish_closed_minutes(float("inf"))
    assert [posixpath.basename(f.path).startswith("ingest-") for f in lake.list_files("landing/vitals")] == [True]
    assert _readings(lake) == ["m-5"]  # ... and lands exactly once, with no temporary file left behind
