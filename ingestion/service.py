"""The ingestion service: authenticated, rate-limited, idempotent and durable HTTP intake into landing.

``POST /v1/vitals`` takes one reading or a list of up to 10 (the payload of docs/ingestion.md). A
request is checked in this order, cheapest first: content type (415), declared size (413), a device
id known to the in-memory credential store (401, before the body is read and without a query), the
body (413 while reading, 408 when it is slower than ``ingest_body_timeout_s``), the device's API key
or signature (401; failures of all clients together are rate-limited: 429), JSON and batch shape
(422), the device's rate (429 with Retry-After), that every reading is the
authenticated device's own and for its patient (403), then each reading's fields. Readings with
field errors are reported per reading; if no reading is valid the answer is 422. Valid readings
are handed to the group-commit :class:`~ingestion.landing_writer.LandingWriter`, and the answer,
202 with one outcome per reading (accepted, duplicate, rejected), is sent only once they are
durable in landing. Every accepted reading then goes to the fast path (``transforms.alerts.fast_path``):
the rules that need only the reading, the registry and the stored baseline raise their alerts within
a second, without waiting for the minute batch.

The service checks the contract (shape, JSON types, identifiers, timestamp format); plausibility
ranges stay with the pipeline, which quarantines out-of-range readings with a reason code instead of
losing them at the door. Run one process per instance (``kidjamo ingest serve``): rate limits,
replay protection and idempotency are per instance, so a proxy in front routes a device to one
instance (sticky by ``X-Device-Id``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.routing import Route

from ingestion import fhir_api
from ingestion.auth import AuthError, CredentialStore, ReplayGuard, verify_request
from ingestion.landing_writer import LandingWriter
from ingestion.metrics import ServiceMetrics
from kidjamo.warehouse.database import database_url as configured_database_url
from kidjamo.lake.json_safety import MAX_NESTING_DEPTH, TOO_DEEP, certainly_safe, unsafe_content
from kidjamo.settings import Settings, get_settings
from kidjamo.lake.partitions import layer_prefix
from kidjamo.lake.storage import Lake
from transforms.alerts.fast_path import FastPath
from transforms.clinical.rules import default_rules

log = logging.getLogger(__name__)

NUMBER_VITALS = ("spo2", "heart_rate", "temperature", "ambient_temp", "respiratory_rate", "hydration_pct", "ambient_humidity")
INTEGER_VITALS = ("activity_level", "pain_scale")
# No single vital is required: a reading without SpO2 still carries its temperature to the rules.
ALL_VITALS = (*NUMBER_VITALS, *INTEGER_VITALS)
NUMBER_METADATA = ("battery_level", "signal_quality")
MAX_ID_LENGTH = 128


class OrjsonResponse(JSONResponse):
    """A JSON response rendered by orjson (several times faster than the standard library on the hot path)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# --- request validation -----------------------------------------------------------------------------
def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object", type(None): "null"}
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, (dict, list)) else kind[type(value)]
    return f"{text[:60]} ({kind.get(type(value), type(value).__name__)})"


def _describe_keys(vitals: dict) -> str:
    present = [f"{name}: {'null' if value is None else _describe(value)}" for name, value in list(vitals.items())[:4]]
    return ", ".join(present)[:120] + (", ..." if len(vitals) > 4 else "")


# Exact types (JSON decoding gives no subclasses), so that true/false never pass for numbers.
_OPTIONAL_NUMBER_TYPES = frozenset({int, float, type(None)})
_OPTIONAL_INTEGER_TYPES = frozenset({int, type(None)})
_OPTIONAL_STRING_TYPES = frozenset({str, type(None)})
_TIMESTAMP_EXPECTED = "an ISO-8601 instant with a time zone, e.g. 2026-11-27T10:30:00Z"
_ID_EXPECTED = f"a non-empty string of at most {MAX_ID_LENGTH} characters"


def validate_reading(reading: Any, prefix: str, *, content_checked: bool = False) -> tuple[list[dict], float | None]:
    """Field errors of one reading as [{path, expected, got}], and its measured time (epoch s) if valid.

    ``content_checked``: the request body was found :func:`~kidjamo.lake.json_safety.certainly_safe`,
    so the walk for control characters and deep nesting is skipped.
    """
    errors: list[dict] = []

    def error(path: str, expected: str, got: Any, *, missing: bool = False) -> None:
        errors.append({"path": prefix + path, "expected": expected, "got": "nothing (field absent)" if missing else _describe(got)})

    if type(reading) is not dict:
        error("", "a reading object", reading)
        return errors, None
    # Before anything else reads it: a NUL fails every later COPY, and deep nesting breaks parsers.
    unsafe = None if content_checked else unsafe_content(reading)
    if unsafe is not None:
        expected = (f"at most {MAX_NESTING_DEPTH} levels of nesting" if unsafe.reason == TOO_DEEP
                    else "text without control characters (U+0000-U+001F, U+007F-U+009F)")
        errors.append({"path": prefix + unsafe.path, "expected": expected, "got": unsafe.detail})
        return errors, None
    for name in ("device_id", "patient_id"):
        value = reading.get(name)
        if type(value) is not str or not value.strip() or len(value) > MAX_ID_LENGTH:
            error(name, _ID_EXPECTED, value, missing=name not in reading)
    message_id = reading.get("message_id")
    if message_id is not None and (type(message_id) is not str or not message_id or len(message_id) > MAX_ID_LENGTH):
        error("message_id", _ID_EXPECTED + ", or absent", message_id)
    measured_at = None
    timestamp = reading.get("timestamp")
    if type(timestamp) is not str:
        error("timestamp", _TIMESTAMP_EXPECTED, timestamp, missing="timestamp" not in reading)
    else:
        try:
            parsed = datetime.fromisoformat(timestamp)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            error("timestamp", _TIMESTAMP_EXPECTED, timestamp)
        else:
            measured_at = parsed.timestamp()
    vitals = reading.get("vitals")
    if type(vitals) is not dict:
        error("vitals", "an object of vital signs", vitals, missing="vitals" not in reading)
    else:
        if all(vitals.get(name) is None for name in ALL_VITALS):
            errors.append({"path": prefix + "vitals", "expected": f"at least one vital sign ({', '.join(ALL_VITALS)})",
                           "got": "no vital sign" if not vitals else f"none of them ({_describe_keys(vitals)})"})
        for name in NUMBER_VITALS:
            value = vitals.get(name)
            if type(value) not in _OPTIONAL_NUMBER_TYPES:
                error(f"vitals.{name}", "a number", value)
        for name in INTEGER_VITALS:
            value = vitals.get(name)
            if type(value) not in _OPTIONAL_INTEGER_TYPES:
                error(f"vitals.{name}", "an integer from 0 to 10", value)
    metadata = reading.get("metadata")
    if metadata is not None:
        if type(metadata) is not dict:
            error("metadata", "an object (battery_level, signal_quality, firmware_version)", metadata)
        else:
            for name in NUMBER_METADATA:
                value = metadata.get(name)
                if type(value) not in _OPTIONAL_NUMBER_TYPES:
                    error(f"metadata.{name}", "a number", value)
            if type(metadata.get("firmware_version")) not in _OPTIONAL_STRING_TYPES:
                error("metadata.firmware_version", "a string", metadata["firmware_version"])
    return errors, (measured_at if not errors else None)


def idempotency_keys(reading: dict, measured_at: float) -> tuple[str, ...]:
    """A reading is a duplicate when its message_id, or its device and instant, were already received."""
    instant = f"d:{reading['device_id']}|{round(measured_at * 1_000_000)}"
    message_id = reading.get("message_id")
    return (f"m:{reading['device_id']}|{message_id}", instant) if message_id else (instant,)


# --- rate limiting ----------------------------------------------------------------------------------
class RateLimiter:
    """A token bucket of readings per device: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, device_id: str, count: int, now: float) -> float:
        """Take ``count`` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        tokens, last = self._buckets.get(device_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= count:
            self._buckets[device_id] = (tokens - count, now)
            return 0.0
        self._buckets[device_id] = (tokens, now)
        return (min(count, self.burst) - tokens) / self.rate


# --- OpenAPI documentation models (the handler parses the raw body itself: it signs and sizes it) --
class ReadingOutcome(BaseModel):
    index: int
    message_id: str | None = None
    status: str  # accepted | duplicate | rejected
    errors: list[dict] = []


class VitalsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ReadingOutcome]


class FieldError(BaseModel):
    path: str
    expected: str
    got: str


class ErrorBody(BaseModel):
    detail: str | list[FieldError]


_NUMBER = {"type": "number"}
_READING_SCHEMA = {
    "type": "object",
    "required": ["device_id", "patient_id", "timestamp", "vitals"],
    "properties": {
        "device_id": {"type": "string", "example": "device-000001"},
        "patient_id": {"type": "string", "example": "patient-000001"},
        "timestamp": {"type": "string", "format": "date-time", "example": "2026-11-27T10:30:00Z"},
        "message_id": {"type": "string", "description": "identifies a send: a re-send with the same id is a duplicate"},
        "vitals": {
            "type": "object",
            "description": "at least one vital sign; any of them may be absent (a reading without SpO2 keeps its temperature)",
            "minProperties": 1,
            "properties": {
                **{name: _NUMBER for name in NUMBER_VITALS},
                **{name: {"type": "integer", "minimum": 0, "maximum": 10} for name in INTEGER_VITALS},
            },
        },
        "metadata": {
            "type": "object",
            "properties": {**{name: _NUMBER for name in NUMBER_METADATA}, "firmware_version": {"type": "string"}},
        },
    },
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [_READING_SCHEMA, {"type": "array", "maxItems": 10, "items": _READING_SCHEMA}]}}},
    },
    "parameters": [
        {"name": "X-Device-Id", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Api-Key", "in": "header", "required": False, "schema": {"type": "string"}, "description": "the device secret"},
        {"name": "X-Timestamp", "in": "header", "required": False, "schema": {"type": "integer"}, "description": "unix seconds (signed requests)"},
        {"name": "X-Signature", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "hex HMAC-SHA256 of '<X-Timestamp>.<body>' keyed with the device's signing key (docs/ingestion.md)"},
    ],
}


# --- the application --------------------------------------------------------------------------------
class IngestionService:
    """The state behind the app: settings, lake, database, writer, credentials, limits and metrics."""

    def __init__(self, settings: Settings, database_url: str | None, lake: Lake, state_dir: Path):
        self.settings = settings
        self.lake = lake
        self._database_url = database_url
        self.metrics = ServiceMetrics()
        self.writer = LandingWriter(
            lake,
            state_dir,
            flush_interval_s=settings.ingest_flush_interval_ms / 1000.0,
            dedupe_window_s=settings.ingest_dedupe_window_s,
            on_flush=self.metrics.on_flush,
            on_publish=self.metrics.on_publish,
        )
        self.metrics.watch_journal(self.writer.unpublished_parts, self.writer.waiting_readings)
        self.replay_guard = ReplayGuard(settings.ingest_signature_tolerance_s)
        self.rate_limiter = RateLimiter(settings.ingest_rate_per_device, settings.ingest_burst_per_device)
        # One bucket for every failed authentication, whoever sends it: a flood of guesses gets 429s.
        self.auth_failures = RateLimiter(settings.ingest_auth_failure_rate, settings.ingest_auth_failure_burst)
        self.credentials: CredentialStore | None = None
        self._background: set[asyncio.Task] = set()
        self.rules = default_rules()
        self.fast_path = FastPath(lambda: self.database_url, self.rules, settings, on_batch=self._fast_path_judged)

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            self._database_url = configured_database_url(self.settings)
        return self._database_url

    async def start(self) -> None:
        recovered = await asyncio.to_thread(self.writer.recover)
        log.info("ingestion service: %d idempotency keys recovered from the journal", recovered)
        loop = asyncio.get_running_loop()
        self.credentials = CredentialStore(
            self.database_url, self.settings.ingest_credential_cache_s, pool_size=self.settings.ingest_db_pool_size,
            on_erasure=lambda devices: asyncio.run_coroutine_threadsafe(self._erase_devices(devices), loop))
        self.credentials.start_listening()  # loads every credential; the database may come up later (/readyz says so)
        await asyncio.to_thread(self.credentials.listening.wait, 10.0)
        await self.writer.start()
        self.fast_path.start()
        # The modules and state loaded so far live as long as the process: out of the collector's
        # sight, a full collection no longer walks them (it stalled every request ~150 ms every ~5 s
        # at 3,500 readings/s; bench/ingestion_load.py p99 86 -> 40 ms with collections off).
        gc.freeze()

    async def stop(self) -> None:
        await self.writer.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.to_thread(self.fast_path.stop)
        if self.credentials is not None:
            await asyncio.to_thread(self.credentials.close)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _erase_devices(self, device_ids: list[str]) -> None:
        """An erasure was notified: the writer forgets the patient's readings (parts, memory, journal)."""
        try:
            erased = await self.writer.erase_devices_soon(device_ids)
            log.warning("erasure: %d reading(s) of %d device(s) erased from the writer", erased, len(device_ids))
        except Exception:
            log.exception("erasure notified but the writer could not erase its parts; the erasure's verification will find them")

    def _auth_refused(self, error: AuthError, now: float) -> OrjsonResponse:
        """401 (or 403), unless failures from all clients together are above their rate: then 429."""
        wait = self.auth_failures.take("*", 1, now)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            return OrjsonResponse({"detail": f"too many failed authentications; retry in {retry_after} s"}, status_code=429,
                                  headers={"Retry-After": str(retry_after)})
        return _error(error.status, error.detail, authenticate=error.status == 401)

    # --- the fast path ---------------------------------------------------------------------------
    def _fast_path_judged(self, readings: list[dict], raised_patients: set, failed: bool, started: list[float]) -> None:
        """Metrics of one fast-path batch (called on the fast path's thread)."""
        if failed:
            self.metrics.on_fast_path("failed", len(readings))
            return
        now = time.perf_counter()
        for reading, began in zip(readings, started):
            if reading.get("patient_id") in raised_patients:
                self.metrics.on_fast_path("raised", seconds=now - began)
            else:
                self.metrics.on_fast_path("not_raised")

    # --- POST /v1/vitals -------------------------------------------------------------------------
    async def post_vitals(self, request: Request) -> OrjsonResponse:
        started = time.perf_counter()
        try:
            response = await self._post_vitals(request, started)
        except Exception:
            log.exception("POST /v1/vitals failed")
            response = OrjsonResponse({"detail": "internal error; retry later"}, status_code=500)
        self.metrics.on_request(response.status_code, time.perf_counter() - started)
        return response

    async def _post_vitals(self, request: Request, started: float) -> OrjsonResponse:
        settings = self.settings
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return _error(415, f"Content-Type must be application/json, got {content_type or 'nothing'!r}")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.ingest_max_body_bytes:
            return _error(413, f"body of {declared} bytes is above the limit of {settings.ingest_max_body_bytes} bytes")
        now = time.time()
        device_id = request.headers.get("x-device-id")
        if not device_id:
            return self._auth_refused(AuthError(401, "missing X-Device-Id header"), now)
        if not self.credentials.loaded.is_set():  # credentials cannot be checked: nothing is stored, the sensor retries
            return OrjsonResponse({"detail": "device credentials are unavailable (database); retry later"}, status_code=503,
                                  headers={"Retry-After": "5"})
        # Memory only: an unknown device is refused before its body is read and without a query.
        credential = self.credentials.get(device_id)
        if credential is None:
            return self._auth_refused(AuthError(401, f"device {device_id[:MAX_ID_LENGTH]!r} is unknown, inactive or revoked"), now)
        body = bytearray()
        try:
            async with asyncio.timeout(settings.ingest_body_timeout_s):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > settings.ingest_max_body_bytes:
                        return _error(413, f"body is above the limit of {settings.ingest_max_body_bytes} bytes")
        except TimeoutError:
            return OrjsonResponse({"detail": f"the body did not arrive within {settings.ingest_body_timeout_s:g} s"}, status_code=408,
                                  headers={"Connection": "close"})
        body = bytes(body)
        try:
            verify_request(credential, request.headers, body, replay_guard=self.replay_guard, now=now)
        except AuthError as error:
            return self._auth_refused(error, now)

        try:
            document = orjson.loads(body)  # refuses NaN and Infinity, which JSON does not have
        except orjson.JSONDecodeError as error:
            self.rate_limiter.take(device_id, 1, now)
            return OrjsonResponse({"detail": [{"path": "body", "expected": "JSON (one reading or a list of readings)", "got": str(error)[:200]}]}, status_code=422)
        readings = document if isinstance(document, list) else [document]
        if not 1 <= len(readings) <= settings.ingest_max_batch:
            self.rate_limiter.take(device_id, 1, now)
            return OrjsonResponse({"detail": [{"path": "body", "expected": f"1 to {settings.ingest_max_batch} readings", "got": f"{len(readings)} readings"}]}, status_code=422)
        wait = self.rate_limiter.take(device_id, len(readings), now)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            return OrjsonResponse(
                {"detail": f"device {device_id} is above {settings.ingest_rate_per_device:g} readings/s; retry in {retry_after} s"},
                status_code=429,
                headers={"Retry-After": str(retry_after)},
            )
        for reading in readings:
            if isinstance(reading, dict) and reading.get("device_id", device_id) != device_id:
                return _error(403, f"device {device_id} may not post readings of device {reading.get('device_id')!r}")
            if isinstance(reading, dict) and isinstance(reading.get("patient_id"), str) and reading["patient_id"] != credential.patient_id:
                return _error(403, f"device {device_id} is not assigned to patient {reading['patient_id']!r}")

        is_batch = isinstance(document, list)
        # One scan of the bytes usually proves there is nothing to find; else each reading is walked to name the field.
        content_checked = certainly_safe(body, readings)
        results: list[dict] = []
        valid: list[tuple[int, dict, float]] = []
        for index, reading in enumerate(readings):
            errors, measured_at = validate_reading(reading, f"[{index}]." if is_batch else "", content_checked=content_checked)
            message_id = reading.get("message_id") if isinstance(reading, dict) else None
            results.append({"index": index, "message_id": message_id if isinstance(message_id, str) else None, "status": "rejected", "errors": errors})
            if not errors:
                valid.append((index, reading, measured_at))
        rejected = len(readings) - len(valid)
        self.metrics.on_readings("rejected", rejected)
        if not valid:
            return OrjsonResponse({"detail": [error for result in results for error in result["errors"]]}, status_code=422)

        received_at = datetime.now(timezone.utc)
        entries = [
            (idempotency_keys(reading, measured_at), orjson.dumps(reading) + b"\n")
            for _, reading, measured_at in valid
        ]
        try:
            written = await self.writer.submit(entries)
        except Exception as error:
            return OrjsonResponse(
                {"detail": f"the landing zone is not writable ({type(error).__name__}); nothing was stored, retry"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        fresh: list[dict] = []
        for (index, reading, _), is_new in zip(valid, written):
            results[index]["status"] = "accepted" if is_new else "duplicate"
            if is_new:
                fresh.append(reading)
        accepted = len(fresh)
        # Every accepted reading meets the single-reading rules within a fraction of a second.
        self.fast_path.submit(fresh, received_at, started)
        self.metrics.on_readings("accepted", accepted)
        self.metrics.on_readings("duplicate", len(valid) - accepted)
        return OrjsonResponse(
            {"accepted": accepted, "duplicates": len(valid) - accepted, "rejected": rejected, "results": results},
            status_code=202,
        )

    # --- health ----------------------------------------------------------------------------------
    async def readiness(self) -> tuple[bool, dict]:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(asyncio.to_thread(self.lake.list_files, layer_prefix("landing"), False), timeout=3)
            checks["landing"] = "ok"
            if self.writer.last_error is not None:
                checks["landing"] = f"last flush failed: {self.writer.last_error}"
            elif self.writer.publish_error is not None:
                # Readings are durable in parts, but until a publication succeeds no pipeline run can see them.
                checks["landing"] = self.writer.publish_error
        except Exception as error:
            checks["landing"] = f"unreachable: {type(error).__name__}: {error}"
        try:
            await asyncio.wait_for(asyncio.to_thread(_ping_database, self.credentials.pool), timeout=3)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unreachable: {type(error).__name__}: {error}"
        checks["credentials"] = "ok" if self.credentials.listening.is_set() else "not listening for credential changes"
        return all(value == "ok" for value in checks.values()), checks


def _ping_database(pool) -> None:
    with pool.connection(timeout=3) as connection:
        connection.execute("SELECT 1")


def _error(status: int, detail: str, *, authenticate: bool = False) -> OrjsonResponse:
    headers = {"WWW-Authenticate": 'KidjamoDevice realm="vitals"'} if authenticate else None
    return OrjsonResponse({"detail": detail}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None, database_url: str | None = None, lake: Lake | None = None, *, state_dir: str | Path | None = None) -> FastAPI:
    """The FastAPI app of the ingestion service (served by ``kidjamo ingest serve``).

    ``state_dir`` holds the group-commit journal (default ``$KIDJAMO_HOME/ingest``); a restarted
    service must be given the same one.
    """
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    service = IngestionService(settings, database_url, lake, Path(state_dir) if state_dir else settings.home / "ingest")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="Kidjamo ingestion service",
        version="1",
        description=(
            "Durable, authenticated intake of wearable vitals into the landing zone. A 202 means the readings are "
            "in landing (fsync and atomic rename, or S3 PUT). See docs/ingestion.md."
        ),
        lifespan=lifespan,
    )
    app.state.service = service

    @app.post(
        "/v1/vitals",
        status_code=202,
        openapi_extra=_REQUEST_BODY,
        responses={
            202: {"model": VitalsAccepted, "description": "stored in landing; one outcome per reading"},
            401: {"model": ErrorBody, "description": "missing, wrong, revoked or replayed credential"},
            403: {"model": ErrorBody, "description": "a reading of another device or of a patient the device is not assigned to"},
            413: {"model": ErrorBody, "description": "body above the size limit"},
            415: {"model": ErrorBody, "description": "Content-Type is not application/json"},
            422: {"model": ErrorBody, "description": "no valid reading: one entry per invalid field (path, expected, got)"},
            429: {"model": ErrorBody, "description": "the device is above its rate; see Retry-After"},
            503: {"model": ErrorBody, "description": "landing not writable or credentials unreadable; nothing stored; see Retry-After"},
        },
        summary="Post one reading or a batch of up to 10",
    )
    async def post_vitals(request: Request) -> OrjsonResponse:
        return await service.post_vitals(request)

    # The hot path is served by a plain Starlette route placed first (no dependency solving per request);
    # the FastAPI declaration above documents it in OpenAPI.
    app.router.routes.insert(0, Route("/v1/vitals", service.post_vitals, methods=["POST"]))

    fhir_api.install(app)  # read-only FHIR for care systems (ingestion/fhir_api.py)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Landing and database are reachable", responses={503: {"description": "not ready"}})
    async def readyz() -> OrjsonResponse:
        ready, checks = await service.readiness()
        return OrjsonResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(service.metrics.render(), media_type=service.metrics.content_type)

    return app
