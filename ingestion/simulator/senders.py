"""How the readings reach the platform: straight into landing files, or signed HTTP posts to the
ingestion service with retries and a local spool, as the sensors do; and the simulation loop."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from ingestion.simulator.fleet import Fleet, Scenario
from ingestion.simulator.payloads import landing_ndjson, utc_instant, write_landing
from kidjamo.lake.storage import Lake


# --- sending: straight to landing, or over HTTP like the sensors ------------------------------------
@dataclass
class SendStats:
    """What a simulation run sent and what came back."""

    generated: int = 0
    sent_requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused_requests: int = 0  # 401/403/413/415/422: the sensor drops them
    retries: int = 0
    spooled: int = 0  # readings waiting in the local spool right now
    landing_files: int = 0
    acknowledged_ids: list[str] = field(default_factory=list)  # message ids that got a 202

    def as_dict(self) -> dict:
        return {name: value for name, value in self.__dict__.items() if name != "acknowledged_ids"}


class LandingSender:
    """Writes each slice of readings as one landing file (no service in between)."""

    def __init__(self, lake: Lake, *, compress: bool = False):
        self.lake = lake
        self.compress = compress
        self.stats = SendStats()

    async def send(self, readings: list[dict]) -> None:
        if not readings:
            return
        arrival = datetime.now(timezone.utc)
        await asyncio.to_thread(write_landing, self.lake, arrival, readings, compress=self.compress)
        self.stats.landing_files += 1
        self.stats.accepted += len(readings)
        self.stats.acknowledged_ids.extend(r.get("message_id") for r in readings if isinstance(r, dict))

    async def close(self) -> None:
        return None


class HttpSender:
    """Posts readings to the ingestion service as the sensors do.

    Each device posts its own readings (at most 10 per request) signed with its secret. A failed
    request (service down, 5xx, 429) is retried with exponential backoff, honouring Retry-After;
    after ``max_attempts`` the readings go to the device's local spool (one NDJSON file per device
    under ``spool_dir``) and are sent first on the device's next turn.
    """

    def __init__(
        self,
        url: str,
        secrets: dict[str, str],
        *,
        spool_dir: str | Path,
        max_attempts: int = 4,
        first_backoff_s: float = 0.25,
        concurrency: int = 64,
        timeout_s: float = 10.0,
    ):
        import httpx

        self.url = url.rstrip("/") + "/v1/vitals"
        self.secrets = secrets
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.stats = SendStats()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=concurrency))
        self._spool: dict[str, list[dict]] = {}
        for path in self.spool_dir.glob("*.ndjson"):
            self._spool[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line]
        self.stats.spooled = sum(len(items) for items in self._spool.values())

    async def send(self, readings: list[dict]) -> None:
        by_device: dict[str, list[dict]] = {device_id: [] for device_id in self._spool}
        for reading in readings:
            device_id = reading.get("device_id") if isinstance(reading, dict) else None
            by_device.setdefault(device_id or "", []).append(reading)
        await asyncio.gather(*(self._send_device(device_id, items) for device_id, items in by_device.items() if device_id))

    async def _send_device(self, device_id: str, readings: list[dict]) -> None:
        spooled = self._spool.pop(device_id, [])
        queue = spooled + readings
        self.stats.spooled -= len(spooled)
        failed: list[dict] = []
        for first in range(0, len(queue), 10):
            batch = queue[first : first + 10]
            if failed or not await self._post(device_id, batch):
                failed.extend(batch)  # keep the order: once the service is down, spool the rest too
        self._write_spool(device_id, failed)

    async def _post(self, device_id: str, batch: list[dict]) -> bool:
        """Post one batch with retries; True once it is answered for good (202 or a refusal)."""
        import httpx

        from ingestion.auth import signed_headers

        secret = self.secrets.get(device_id)
        body = json.dumps(batch if len(batch) > 1 else batch[0], separators=(",", ":")).encode()
        backoff = self.first_backoff_s
        for attempt in range(self.max_attempts):
            headers = {"Content-Type": "application/json"}
            if secret is not None:
                headers.update(signed_headers(device_id, secret, body, precise=True))
            try:
                async with self._semaphore:
                    self.stats.sent_requests += 1
                    response = await self._client.post(self.url, content=body, headers=headers)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 202:
                outcome = response.json()
                self.stats.accepted += outcome["accepted"]
                self.stats.duplicates += outcome["duplicates"]
                self.stats.rejected += outcome["rejected"]
                self.stats.acknowledged_ids.extend(r["message_id"] for r in outcome["results"] if r["status"] != "rejected" and r["message_id"])
                return True
            if response is not None and response.status_code in (401, 403, 413, 415, 422):
                self.stats.refused_requests += 1
                self.stats.rejected += len(batch)
                return True
            if attempt + 1 < self.max_attempts:
                self.stats.retries += 1
                retry_after = response.headers.get("retry-after") if response is not None else None
                await asyncio.sleep(float(retry_after) if retry_after and retry_after.isdigit() else backoff)
                backoff *= 2
        return False

    def _write_spool(self, device_id: str, readings: list[dict]) -> None:
        path = self.spool_dir / f"{device_id}.ndjson"
        if readings:
            self._spool[device_id] = readings
            self.stats.spooled += len(readings)
            path.write_bytes(landing_ndjson(readings))
        elif path.exists():
            path.unlink()

    async def drain_spool(self, *, attempts: int, pause_s: float) -> bool:
        """Send what waits in the spool, up to ``attempts`` times ``pause_s`` apart (say, until a restarted
        service is back); True when nothing is left in it."""
        for _ in range(attempts):
            if self.stats.spooled == 0:
                return True
            await self.send([])
            await asyncio.sleep(pause_s)
        return self.stats.spooled == 0

    async def close(self) -> None:
        await self._client.aclose()


# --- a simulation run -------------------------------------------------------------------------------
async def run_simulation(
    fleet: Fleet,
    sender,
    *,
    start: datetime,
    end: datetime,
    realtime: bool,
    step_s: int = 5,
    scenarios: Sequence[Scenario] = (),
    hypoxia_patient: bool = False,
    on_step=None,
) -> SendStats:
    """Generate [start, end) in slices of ``step_s`` and hand each slice to ``sender``.

    In real time a slice is sent when it ends on the wall clock (the readings' timestamps are
    then at most ``step_s`` old); otherwise slices are sent as fast as the sender takes them.
    ``on_step(done, total, stats)`` is called after every slice (the progress display).
    """
    start, end = utc_instant(start), utc_instant(end)
    total = max(1, math.ceil((end - start).total_seconds() / step_s))
    for step in range(total):
        slice_start = start + timedelta(seconds=step * step_s)
        slice_end = min(end, slice_start + timedelta(seconds=step_s))
        if realtime:
            delay = (slice_end - datetime.now(timezone.utc)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
        readings = fleet.readings(slice_start, slice_end, scenarios=scenarios, hypoxia_patient=hypoxia_patient)
        sender.stats.generated += len(readings)
        await sender.send(readings)
        if on_step is not None:
            on_step(step + 1, total, sender.stats)
    return sender.stats
