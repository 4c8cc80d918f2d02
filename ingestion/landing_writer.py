"""Group commit into the landing zone: many requests, one durable NDJSON file per short window.

Requests hand their readings to :class:`LandingWriter` and wait. Every ``flush_interval`` (or at once
when a batch is full) the writer

1. appends an *intent* line (file name and the readings' idempotency keys) to a local journal and
   fsyncs it,
2. writes the landing file atomically (``Lake.write_bytes``: temporary name, fsync, rename, fsync of
   the folder; on S3 one PUT),
3. appends a *commit* line, and only then releases the waiting requests, which answer 202.

So an acknowledged reading is always in landing. After a crash, :meth:`LandingWriter.recover`
replays the journal: the keys of committed files (and of intents whose file did reach landing or
raw before the crash) are remembered again, so a sensor re-sending a reading that was written but
not acknowledged gets "duplicate" and the reading stays in landing exactly once. Keys are
remembered for ``dedupe_window_s``; older re-sends are caught by silver's (device_id, measured_at)
deduplication.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kidjamo.storage import Lake, minute_partition

log = logging.getLogger(__name__)

JOURNAL_SEGMENT_S = 600
#: A flush that starts this close to the end of a minute lands in the next minute's partition, so that
#: the minute's pipeline run (which starts a few seconds after the minute ends) never misses it.
MINUTE_GUARD_S = 1.0


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
    """Collects readings from concurrent requests and makes them durable in landing, one file per flush."""

    def __init__(
        self,
        lake: Lake,
        state_dir: str | Path,
        *,
        flush_interval_s: float = 0.05,
        max_batch_readings: int = 5000,
        dedupe_window_s: float = 900,
        on_flush=None,
    ):
        self.lake = lake
        self.journal_dir = Path(state_dir) / "journal"
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = flush_interval_s
        self.max_batch_readings = max_batch_readings
        self.dedupe_window_s = dedupe_window_s
        self.on_flush = on_flush  # called with FlushStats after each landing file
        self.instance = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self._sequence = 0
        self._seen: dict[str, float] = {}  # idempotency key -> when it became durable
        self._pending: dict[str, asyncio.Future] = {}  # key -> the flush that will make it durable
        self._batch = _Batch()
        self._wake: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._next_prune = 0.0
        self.last_error: str | None = None
        # Flushes are serial; their own thread keeps them from queueing behind other blocking work.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer")

    # --- life cycle --------------------------------------------------------------------------------
    def recover(self) -> int:
        """Re-learn the keys of readings already in landing from the journal; return how many."""
        horizon = time.time() - self.dedupe_window_s
        intents: dict[str, tuple[float, list[str]]] = {}
        committed: set[str] = set()
        for segment in sorted(self.journal_dir.glob("journal-*.log")):
            if int(segment.stem.split("-")[1]) * JOURNAL_SEGMENT_S + JOURNAL_SEGMENT_S < horizon:
                segment.unlink()
                continue
            for line in segment.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the crash: its file was never acknowledged
                if "commit" in entry:
                    committed.add(entry["commit"])
                elif "intent" in entry:
                    intents[entry["intent"]] = (entry["t"], entry["keys"])
        for path, (written_at, keys) in intents.items():
            if written_at < horizon:
                continue
            if path in committed or self._file_reached_lake(path):
                for key in keys:
                    self._seen[key] = written_at
        return len(self._seen)

    def _file_reached_lake(self, landing_path: str) -> bool:
        """Did a landing file whose commit line is missing get written (maybe moved to raw since)?"""
        raw_path = "raw/" + landing_path.split("/", 1)[1]
        return self.lake.exists(landing_path) or self.lake.exists(raw_path)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._batch = _Batch(future=asyncio.get_running_loop().create_future())
        self._task = asyncio.create_task(self._flush_loop(), name="landing-writer")

    async def stop(self) -> None:
        """Flush what is pending, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self._batch.lines:
            await self._flush(self._batch)
        self._task = None
        self._executor.shutdown(wait=True)

    # --- requests ----------------------------------------------------------------------------------
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

    # --- flushing ----------------------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            try:
                await asyncio.wait_for(self._full.wait(), timeout=self.flush_interval_s)
            except asyncio.TimeoutError:
                pass
            batch = self._batch
            self._batch = _Batch(future=asyncio.get_running_loop().create_future())
            self._wake.clear()
            self._full.clear()
            await self._flush(batch)

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
        now = time.time()
        for key in batch.keys:
            self._seen[key] = now
            self._pending.pop(key, None)
        batch.future.set_result(path)
        if self.on_flush is not None:
            self.on_flush(FlushStats(path, len(batch.lines), time.perf_counter() - started))
        if now >= self._next_prune:
            horizon = now - self.dedupe_window_s
            self._seen = {key: seen for key, seen in self._seen.items() if seen > horizon}
            self._next_prune = now + 30.0

    def _write(self, lines: list[bytes], keys: list[str]) -> str:
        now = time.time()
        arrival_minute = datetime.fromtimestamp(now + MINUTE_GUARD_S, timezone.utc).replace(second=0, microsecond=0)
        self._sequence += 1
        name = f"ingest-{self.instance}-{self._sequence:07d}.ndjson"
        path = f"landing/vitals/{minute_partition(arrival_minute)}/{name}"
        journal = self.journal_dir / f"journal-{int(now) // JOURNAL_SEGMENT_S}.log"
        with journal.open("a") as handle:
            handle.write(json.dumps({"intent": path, "t": now, "keys": keys}, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.lake.write_bytes(path, b"".join(lines))
        with journal.open("a") as handle:
            handle.write(json.dumps({"commit": path}) + "\n")
        return path
