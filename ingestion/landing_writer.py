"""Group commit into the landing zone: acknowledged within milliseconds, one landing file per minute.

Requests hand their readings to :class:`LandingWriter` and wait. Every ``flush_interval`` (or at once
when a batch is full) the writer makes the batch durable as a *part*, then releases the waiting
requests, which answer 202:

1. append an *intent* line (part name and the readings' idempotency keys) to a local journal, fsync;
2. write the part ``landing/vitals/<minute>/_ingest-<instance>-<seq>.ndjson`` atomically
   (``Lake.write_bytes``: temporary name, fsync, rename, fsync of the folder; on S3 one PUT);
3. append a *commit* line.

Parts start with ``_``, so the pipeline ignores them (in progress: kidjamo/lake/records.py). When a minute closes,
its parts are *published* as one file ``ingest-<instance>-<YYYYmmddTHHMM>.ndjson`` in the same
partition (a journalled publish intent, the merged file, then the parts deleted), so a minute holds
one file per service instance however many requests came in, and a sensor still gets its 202
within the flush interval. Parts are written to the next minute's partition during the last 3 seconds
of a minute, so a minute's file is published before the minute ends and its pipeline run (which
starts after the minute) always finds it.

A publication that comes too late for its minute's run — a retry after a failed publish, a minute
whose publication started after the minute ended, parts recovered after a crash — is published into
the *current* minute instead, where the next run will find it. A published name is never written
twice: a minute already published gets a new, unique file (its first part's sequence number in the
name), so no acknowledged reading can be overwritten. The writer's clock never goes back: when the
system clock steps back, arrival minutes keep advancing at the monotonic clock's rate until the wall
clock catches up. A failed publication is reported on ``/readyz`` until one succeeds.

After a crash, :meth:`LandingWriter.recover` replays the journal: the idempotency keys of every
part that reached the lake are remembered again (so a re-sent reading that was written but never
acknowledged is a duplicate), a publish that was cut short is finished, and the parts left by this
journal's earlier instances are published into the current minute (the minute they now arrive in);
their temporary files (a write the crash cut short, never acknowledged) are deleted.
Keys are remembered for ``dedupe_window_s``; older re-sends are caught by silver's
(device_id, measured_at) deduplication.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kidjamo.lake.partitions import layer_prefix, partition_path
from kidjamo.lake.storage import Lake

log = logging.getLogger(__name__)

JOURNAL_SEGMENT_S = 600
#: Parts written this close to the end of a minute go to the next minute, so that a minute's file is
#: published before the minute ends (a minute at 3,500 readings/s is an 80 MB file).
MINUTE_GUARD_S = 3.0
#: How often an idle writer looks for a closed minute to publish.
PUBLISH_TICK_S = 0.2
PART_PREFIX = "_ingest-"
LANDING_PREFIX = layer_prefix("landing")


def _arrival_minute(now: float) -> datetime:
    return datetime.fromtimestamp(now + MINUTE_GUARD_S, timezone.utc).replace(second=0, microsecond=0)


def _has_ended(minute: datetime, now: float) -> bool:
    """Has the minute's pipeline run (which starts when the minute ends) possibly listed its partition?"""
    return now >= minute.timestamp() + 60


class ForwardClock:
    """Wall-clock seconds that never go back.

    A step back of the system clock (NTP, a VM restored, an operator) would send new parts into a
    minute that is already published; instead the clock keeps advancing at the monotonic rate from
    the last time it read, until the wall clock catches up. Steps forward are taken as they come.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._last_wall = time.time()
        self._last_monotonic = time.monotonic()

    def __call__(self) -> float:
        with self._lock:
            wall, monotonic = time.time(), time.monotonic()
            now = max(wall, self._last_wall + (monotonic - self._last_monotonic))
            self._last_wall, self._last_monotonic = now, monotonic
            return now


def _part_instance(name: str) -> str:
    """``_ingest-<instance>-<seq>.ndjson`` -> instance."""
    return name[len(PART_PREFIX):].rsplit("-", 1)[0]


def _partition_minute(path: str) -> datetime:
    """``landing/vitals/dt=2026-11-27/hh=10/mm=05/...`` -> 2026-11-27 10:05 UTC."""
    return datetime.strptime(_partition_stamp(path), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)


def _partition_stamp(path: str) -> str:
    """``landing/vitals/dt=2026-11-27/hh=10/mm=05/...`` -> ``20261127T1005``."""
    day, hour, minute = (piece.split("=", 1)[1] for piece in path.split("/")[2:5])
    return f"{day.replace('-', '')}T{hour}{minute}"


def _is_own_temporary(name: str, instances: set[str]) -> bool:
    """Is ``name`` the temporary file of a part or publication of one of ``instances`` (``.<name>.<uuid>.tmp``)?"""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    final = name[1:]
    return any(final.startswith((f"{PART_PREFIX}{instance}-", f"ingest-{instance}-")) for instance in instances)


ERASED_LINE = b'{"erased":true}\n'


def _device_of(line: bytes) -> str | None:
    """The device id of one NDJSON reading line (None when it has none or is not JSON)."""
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document.get("device_id") if isinstance(document, dict) else None


def _key_device(key: str) -> str:
    """``d:<device>|<instant>`` or ``m:<device>|<message id>`` -> device."""
    return key[2:].split("|", 1)[0]


def redact_journal_segment(segment: Path, devices: set[str]) -> None:
    """Rewrite one journal segment (atomically) without the idempotency keys of ``devices`` (erasure)."""
    lines = segment.read_text().splitlines()
    redacted = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            redacted.append(line)
            continue
        if isinstance(entry, dict) and "keys" in entry:
            entry["keys"] = [key for key in entry["keys"] if _key_device(key) not in devices]
            line = json.dumps(entry, separators=(",", ":"))
        redacted.append(line)
    if redacted != lines:
        temporary = segment.with_name("." + segment.name + ".tmp")
        with temporary.open("w") as handle:
            handle.write("".join(line + "\n" for line in redacted))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, segment)


class RecentKeys:
    """Idempotency keys of the last ``window_s`` seconds, in one set per minute: expiring is O(1)."""

    def __init__(self, window_s: float, bucket_s: int = 60):
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: deque[tuple[float, set[str]]] = deque()

    def add_all(self, keys: list[str], at: float) -> None:
        start = at - at % self.bucket_s
        if not self._buckets or self._buckets[-1][0] < start:
            self._buckets.append((start, set()))
        self._buckets[-1][1].update(keys)  # an older time joins the newest bucket: it lives a little longer

    def __contains__(self, key: str) -> bool:
        return any(key in keys for _, keys in reversed(self._buckets))

    def __len__(self) -> int:
        return sum(len(keys) for _, keys in self._buckets)

    def discard_if(self, predicate) -> None:
        """Forget every key for which ``predicate(key)`` is true."""
        for _, keys in self._buckets:
            keys.difference_update([key for key in keys if predicate(key)])

    def forget_before(self, horizon: float) -> None:
        while self._buckets and self._buckets[0][0] + self.bucket_s <= horizon:
            self._buckets.popleft()


@dataclass
class _Batch:
    lines: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    future: asyncio.Future | None = None


@dataclass(frozen=True)
class FlushStats:
    path: str
    readings: int
    seconds: float


class LandingWriter:
    """Collects readings from concurrent requests, makes them durable, and publishes one file per minute."""

    def __init__(
        self,
        lake: Lake,
        state_dir: str | Path,
        *,
        flush_interval_s: float = 0.025,
        max_batch_readings: int = 5000,
        dedupe_window_s: float = 900,
        on_flush=None,
        on_publish=None,
    ):
        self.lake = lake
        self.state_dir = Path(state_dir)
        self.journal_dir = self.state_dir / "journal"
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = flush_interval_s
        self.max_batch_readings = max_batch_readings
        self.dedupe_window_s = dedupe_window_s
        self.on_flush = on_flush  # called with FlushStats after each part
        self.on_publish = on_publish  # called with FlushStats after each published landing file
        self.instance = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self._sequence = 0
        self._seen = RecentKeys(dedupe_window_s)  # idempotency keys of durable readings
        self._pending: dict[str, asyncio.Future] = {}  # key -> the flush that will make it durable
        self._parts: dict[datetime, list[tuple[str, bytes]]] = {}  # unpublished parts by arrival minute
        self._batch = _Batch()
        self._wake: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._next_prune = 0.0
        self.last_error: str | None = None  # of the last flush: requests answer 503 meanwhile
        self.publish_error: str | None = None  # of the last publication; cleared by the next one that succeeds
        self.clock = ForwardClock()
        self._published: dict[str, float] = {}  # landing files this instance wrote (and when): never written twice
        # Flushes are serial, and so are publications; each has its own thread so that publishing a large
        # minute never holds up the group commits (and the 202s) of the next one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer")
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-publisher")
        self._publishing: set[asyncio.Future] = set()
        self._erased_devices: set[str] = set()  # readings of these devices are never written again (erasure)

    # --- recovery ----------------------------------------------------------------------------------
    def recover(self) -> int:
        """Replay the journal after a (possibly unclean) stop; return how many idempotency keys are known.

        Finishes interrupted publications and publishes the parts left by this journal's earlier
        instances into the current minute.
        """
        horizon = self.clock() - self.dedupe_window_s
        intents: dict[str, tuple[float, list[str]]] = {}
        committed: set[str] = set()
        publishing: dict[str, str] = {}  # part -> the file it was being published into
        self._prune_journal(horizon)
        for segment in sorted(self.journal_dir.glob("journal-*.log")):
            for line in segment.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the crash: nothing it names was acknowledged
                if "commit" in entry:
                    committed.add(entry["commit"])
                elif "intent" in entry:
                    intents[entry["intent"]] = (entry["t"], entry["keys"])
                elif "publish" in entry:
                    publishing.update({part: entry["publish"] for part in entry["parts"]})
        for part, (written_at, keys) in sorted(intents.items(), key=lambda item: item[1][0]):
            if written_at >= horizon and (part in committed or part in publishing or self.lake.exists(part)):
                self._seen.add_all(keys, written_at)
        self._publish_leftovers(publishing)
        with open(self.state_dir / "instances", "a") as handle:  # whose parts this journal may publish
            handle.write(self.instance + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return len(self._seen)

    def _publish_leftovers(self, publishing: dict[str, str]) -> None:
        instances_file = self.state_dir / "instances"
        mine = set(instances_file.read_text().split()) if instances_file.exists() else set()
        files = [f.path for f in self.lake.list_files(LANDING_PREFIX)]
        leftovers = [path for path in files
                     if posixpath.basename(path).startswith(PART_PREFIX) and _part_instance(posixpath.basename(path)) in mine]
        for path in files:
            if _is_own_temporary(posixpath.basename(path), mine):
                # A write cut short by the crash: never renamed, so never acknowledged (its sensors re-send).
                self.lake.delete(path)
        unfinished: dict[str, list[str]] = {}
        orphans: dict[str, list[str]] = {}
        now = self.clock()
        arrival = _arrival_minute(now)
        for part in leftovers:
            instance = _part_instance(posixpath.basename(part))
            target = publishing.get(part)
            if target is None:
                # Published under its own minute, but the journal entry has expired? Else it arrives now.
                original = f"{posixpath.dirname(part)}/ingest-{instance}-{_partition_stamp(part)}.ndjson"
                if self._reached_lake(original):
                    self.lake.delete(part)
                    continue
                target = partition_path("landing", arrival, f"ingest-{instance}-{_partition_stamp(part)}-recovered.ndjson")
                orphans.setdefault(target, []).append(part)
            elif self._reached_lake(target):
                self.lake.delete(part)  # published before the crash, only the clean-up was missing
            else:
                unfinished.setdefault(target, []).append(part)
        for target, parts in {**unfinished, **orphans}.items():
            if target in unfinished and _has_ended(_partition_minute(target), now):
                # Its minute's run may be over: the file arrives now, in the current minute.
                target = partition_path("landing", arrival, posixpath.basename(target).removesuffix(".ndjson") + "-recovered.ndjson")
            target = self._unused_name(target)
            self._publish(target, [(part, self.lake.read_bytes(part)) for part in sorted(parts)])
            log.warning("published %d part(s) left by a previous run as %s", len(parts), target)

    def _reached_lake(self, landing_path: str) -> bool:
        """Is the file in landing, or already moved to raw by the pipeline?"""
        return self.lake.exists(landing_path) or self.lake.exists("raw/" + landing_path.split("/", 1)[1])

    # --- life cycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._batch = _Batch(future=asyncio.get_running_loop().create_future())
        self._task = asyncio.create_task(self._flush_loop(), name="landing-writer")

    async def stop(self) -> None:
        """Flush what is pending, publish every part (the current minute's too), then stop."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self._batch.lines:
            await self._flush(self._batch)
        await asyncio.gather(*self._publishing, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._publisher, self.publish_closed_minutes, float("inf"))
        self._task = None
        self._executor.shutdown(wait=True)
        self._publisher.shutdown(wait=True)

    # --- requests ----------------------------------------------------------------------------------
    def unpublished_parts(self) -> int:
        """Durable parts waiting to be merged into their minute's landing file (the journal backlog)."""
        return sum(len(parts) for parts in list(self._parts.values()))

    def waiting_readings(self) -> int:
        """Readings handed in but not yet durable (their requests are still waiting)."""
        return len(self._batch.lines)

    def is_known(self, keys: tuple[str, ...]) -> bool:
        return any(key in self._seen or key in self._pending for key in keys)

    async def submit(self, readings: list[tuple[tuple[str, ...], bytes]]) -> list[bool]:
        """Make readings durable; return per reading True (written now) or False (a duplicate).

        Each reading is (idempotency keys, NDJSON line). Returns once every reading, including the
        originals of duplicates still in flight, is durable in landing; raises if the flush failed.
        """
        waits: set[asyncio.Future] = set()
        outcomes: list[bool] = []
        batch = self._batch
        for keys, line in readings:
            pending = next((self._pending[key] for key in keys if key in self._pending), None)
            if pending is not None:
                waits.add(pending)
                outcomes.append(False)
            elif any(key in self._seen for key in keys):
                outcomes.append(False)
            else:
                batch.lines.append(line)
                batch.keys.extend(keys)
                for key in keys:
                    self._pending[key] = batch.future
                waits.add(batch.future)
                outcomes.append(True)
        if batch.lines:
            self._wake.set()
            if len(batch.lines) >= self.max_batch_readings:
                self._full.set()
        if waits:
            await asyncio.gather(*(asyncio.shield(wait) for wait in waits))
        return outcomes

    # --- erasure -----------------------------------------------------------------------------------
    def erase_devices(self, device_ids: list[str]) -> int:
        """Erasure of a patient: their readings leave this writer's memory, unpublished parts and journal.

        Called when an erasure is notified, on the flush thread (:meth:`erase_devices_soon`). Readings of these devices become
        ``{"erased":true}`` tombstones in the unpublished parts, in memory and in the lake alike (the
        positions stay, as the erasure does elsewhere), are dropped from batches not yet written, and
        their idempotency keys leave memory and the journal. Returns how many readings were erased.
        """
        devices = set(device_ids)
        self._erased_devices |= devices
        erased = 0
        kept_lines, kept_keys = [], []
        for line in self._batch.lines:
            if _device_of(line) in devices:
                erased += 1
            else:
                kept_lines.append(line)
        self._batch.lines[:] = kept_lines
        kept_keys = [key for key in self._batch.keys if _key_device(key) not in devices]
        self._batch.keys[:] = kept_keys
        for parts in list(self._parts.values()):  # snapshot: the flush thread may add a minute meanwhile
            for index, (part, data) in enumerate(list(parts)):
                lines = data.splitlines(keepends=True)
                marked = [ERASED_LINE if _device_of(line) in devices else line for line in lines]
                if marked != lines:
                    erased += sum(1 for a, b in zip(lines, marked) if a is not b)
                    new_data = b"".join(marked)
                    parts[index] = (part, new_data)
                    if self.lake.exists(part):
                        self.lake.write_bytes(part, new_data)
        self._seen.discard_if(lambda key: _key_device(key) in devices)
        for segment in sorted(self.journal_dir.glob("journal-*.log")):
            redact_journal_segment(segment, devices)
        return erased

    async def erase_devices_soon(self, device_ids: list[str]) -> int:
        """:meth:`erase_devices` on the flush thread, so that it never interleaves with a part being written."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.erase_devices, device_ids)

    # --- flushing and publishing -------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=PUBLISH_TICK_S)
            except asyncio.TimeoutError:
                pass
            if self._wake.is_set():
                try:
                    await asyncio.wait_for(self._full.wait(), timeout=self.flush_interval_s)
                except asyncio.TimeoutError:
                    pass
                batch = self._batch
                self._batch = _Batch(future=loop.create_future())
                self._wake.clear()
                self._full.clear()
                await self._flush(batch)
            current = _arrival_minute(self.clock())
            for minute in sorted(m for m in self._parts if m < current):
                self._start_publishing(minute, self._parts.pop(minute))

    def _start_publishing(self, minute: datetime, parts: list[tuple[str, bytes]]) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._publisher, self._publish_minute, minute, parts)
        self._publishing.add(future)

        def done(finished: asyncio.Future) -> None:
            self._publishing.discard(finished)
            if finished.exception() is not None:  # the parts stay durable; the next tick tries again
                error = finished.exception()
                log.error("publishing minute %s failed: %s", minute, error)
                self.publish_error = f"publishing minute {minute:%Y-%m-%dT%H:%MZ} failed: {type(error).__name__}: {error}"
                self._parts.setdefault(minute, [])[:0] = parts

        future.add_done_callback(done)

    def _minute_file(self, minute: datetime) -> str:
        return partition_path("landing", minute, f"ingest-{self.instance}-{minute:%Y%m%dT%H%M}.ndjson")

    def _target_for(self, minute: datetime, parts: list[tuple[str, bytes]], now: float) -> str:
        """Where the parts of ``minute`` are published: its own file while its run cannot have started, else the current minute."""
        if not _has_ended(minute, now):
            return self._unused_name(self._minute_file(minute), parts)
        # Too late for the minute's run (a retry, a slow publication, a clock that stepped back).
        late = partition_path("landing", _arrival_minute(now), f"ingest-{self.instance}-{minute:%Y%m%dT%H%M}-late.ndjson")
        return self._unused_name(late, parts)

    def _unused_name(self, target: str, parts: list[tuple[str, bytes]] | None = None) -> str:
        """``target``, or a unique variant of it when that name was ever published (landing or raw)."""
        if target not in self._published and not self._reached_lake(target):
            return target
        stem = target.removesuffix(".ndjson")
        sequence = posixpath.basename(parts[0][0]).rsplit("-", 1)[-1].removesuffix(".ndjson") if parts else uuid.uuid4().hex[:12]
        candidate, attempt = f"{stem}-{sequence}.ndjson", 1
        while candidate in self._published or self._reached_lake(candidate):
            attempt += 1
            candidate = f"{stem}-{sequence}-{attempt}.ndjson"
        return candidate

    async def _flush(self, batch: _Batch) -> None:
        started = time.perf_counter()
        try:
            path = await asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch.lines, batch.keys)
        except Exception as error:  # the requests answer 503; their sensors re-send
            log.exception("landing flush of %d readings failed", len(batch.lines))
            self.last_error = f"{type(error).__name__}: {error}"
            for key in batch.keys:
                self._pending.pop(key, None)
            batch.future.set_exception(error)
            batch.future.exception()  # retrieved: waiting requests see it through their own await
            return
        self.last_error = None
        now = self.clock()
        self._seen.add_all(batch.keys, now)
        for key in batch.keys:
            self._pending.pop(key, None)
        batch.future.set_result(path)
        if self.on_flush is not None:
            self.on_flush(FlushStats(path, len(batch.lines), time.perf_counter() - started))
        if now >= self._next_prune:
            horizon = now - self.dedupe_window_s
            self._seen.forget_before(horizon)
            self._prune_journal(horizon)
            self._next_prune = now + 30.0

    def _prune_journal(self, horizon: float) -> None:
        """Delete journal segments older than the dedupe window (their minutes are long published)."""
        for segment in self.journal_dir.glob("journal-*.log"):
            if int(segment.stem.split("-")[1]) * JOURNAL_SEGMENT_S + JOURNAL_SEGMENT_S < horizon:
                segment.unlink(missing_ok=True)

    def _write(self, lines: list[bytes], keys: list[str]) -> str:
        """Write one part durably (journal intent, atomic write, journal commit); return its lake path."""
        if self._erased_devices:  # a batch accepted just before its device's erasure was notified
            lines = [ERASED_LINE if _device_of(line) in self._erased_devices else line for line in lines]
            keys = [key for key in keys if _key_device(key) not in self._erased_devices]
        now = self.clock()
        minute = _arrival_minute(now)
        self._sequence += 1
        part = partition_path("landing", minute, f"{PART_PREFIX}{self.instance}-{self._sequence:07d}.ndjson")
        data = b"".join(lines)
        self._journal({"intent": part, "t": now, "keys": keys}, sync=True)
        self.lake.write_bytes(part, data)
        self._journal({"commit": part})
        self._parts.setdefault(minute, []).append((part, data))
        return part

    def publish_closed_minutes(self, now: float) -> list[str]:
        """Publish the parts of every minute that can receive no more parts; return the files written."""
        current = _arrival_minute(now) if now != float("inf") else None
        published = []
        for minute in sorted(self._parts):
            if current is not None and minute >= current:
                break
            published.append(self._publish_minute(minute, self._parts[minute], now if current is not None else None))
            del self._parts[minute]
        return published

    def _publish_minute(self, minute: datetime, parts: list[tuple[str, bytes]], now: float | None = None) -> str:
        """Publish one minute's parts (into the current minute if too late for its own); return the file."""
        target = self._target_for(minute, parts, self.clock() if now is None else now)
        self._publish(target, parts)
        return target

    def _publish(self, target: str, parts: list[tuple[str, bytes]]) -> None:
        started = time.perf_counter()
        self._journal({"publish": target, "parts": [part for part, _ in parts]}, sync=True)
        data = b"".join(content for _, content in parts)
        now = self.clock()
        # Claimed before writing: even a failed attempt's name is never reused. Older names are in raw by now.
        self._published = {name: at for name, at in self._published.items() if at >= now - self.dedupe_window_s}
        self._published[target] = now
        self.lake.write_bytes(target, data)
        for part, _ in parts:
            self.lake.delete(part)
        self._journal({"published": target})
        self.publish_error = None
        if self.on_publish is not None:
            self.on_publish(FlushStats(target, data.count(b"\n"), time.perf_counter() - started))

    def _journal(self, entry: dict, *, sync: bool = False) -> None:
        segment = self.journal_dir / f"journal-{int(self.clock()) // JOURNAL_SEGMENT_S}.log"
        with segment.open("a") as handle:
            handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
