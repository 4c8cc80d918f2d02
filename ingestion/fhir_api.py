"""Read-only FHIR R4 endpoints for care systems, served by the ingestion service under ``/fhir``.

``GET /fhir/metadata`` (open) describes the server. Everything else needs ``Authorization: Bearer
<token>`` of a care system registered with ``kidjamo fhir clients add`` and reads only patients of
that client's care teams (another team's patient is a 404, exactly like an unknown one):

- ``GET /fhir/Patient/{id}`` — the Patient;
- ``GET /fhir/Patient/{id}/$everything?start=&end=&granularity=minute|reading`` — a searchset
  Bundle: Patient, Devices, vital-sign Observations measured in [start, end) (default: the last
  24 hours), Flags of the alerts changed then and Communications of the notifications sent then.

Every successful read is recorded in the audit log (``fhir_read``: client, patient, window, counts).
Errors are OperationOutcome resources. The routes are plain (synchronous) functions: FastAPI runs
them in its thread pool, off the ingestion hot path's event loop.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from kidjamo.warehouse.database import connect
from kidjamo.warehouse.audit import record_audit_event
from transforms.fhir import resources as fhir
from transforms.fhir.clients import FhirClient, authenticate
from transforms.fhir.export import GRANULARITIES, patient_everything, read_patient

FHIR_JSON = "application/fhir+json"
DEFAULT_WINDOW = timedelta(hours=24)
#: The widest window one request may ask for, per granularity (beyond: 400 too-costly).
MAX_WINDOW = {"minute": timedelta(days=31), "reading": timedelta(days=7)}


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


class FhirError(Exception):
    """An error answered as an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str, headers: dict | None = None):
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics, self.headers = status, code, diagnostics, headers


def operation_outcome(error: FhirError) -> FhirResponse:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": error.code, "diagnostics": error.diagnostics}]}
    return FhirResponse(body, status_code=error.status, headers=error.headers)


def _database_url(request: Request) -> str:
    return request.app.state.service.database_url


def require_client(request: Request) -> FhirClient:
    """The care system behind the request's bearer token (401 without a valid one)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="kidjamo-fhir"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise FhirError(401, "login", "a bearer token is required (Authorization: Bearer <token>)", challenge)
    client = authenticate(_database_url(request), token.strip())
    if client is None:
        raise FhirError(401, "login", "the bearer token is unknown or revoked", {**challenge, "WWW-Authenticate": 'Bearer realm="kidjamo-fhir", error="invalid_token"'})
    return client


def _moment(text: str | None, name: str) -> datetime | None:
    """A FHIR date or dateTime parameter as a UTC instant (a date is its first instant, in UTC)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError(400, "invalid", f"{name}: {text!r} is not a FHIR date or dateTime (e.g. 2026-11-27 or 2026-11-27T15:00:00Z)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _patient_id(database_url: str, resource_id: str) -> str | None:
    """The registry id behind a Patient resource id (ids that are not valid FHIR ids are hashed)."""
    with connect(database_url, application_name="kidjamo-fhir-read") as connection:
        if connection.execute("SELECT 1 FROM kidjamo.patients WHERE patient_id = %s", (resource_id,)).fetchone():
            return resource_id
        if resource_id.startswith("h-"):
            for (patient_id,) in connection.execute("SELECT patient_id FROM kidjamo.patients"):
                if fhir.fhir_id(patient_id) == resource_id:
                    return patient_id
    return None


def _audit(database_url: str, client: FhirClient, patient_id: str, detail: dict) -> None:
    with connect(database_url, application_name="kidjamo-fhir-read") as connection:
        record_audit_event(connection, "fhir_read", {"client": client.client_id, **detail}, patient_id)


def _not_found(resource_id: str) -> FhirError:
    return FhirError(404, "not-found", f"Patient/{resource_id} is not known to this server (or not to your care teams)")


def _everything(request: Request, client: FhirClient, resource_id: str, start: datetime, end: datetime, granularity: str) -> dict:
    database_url = _database_url(request)
    patient_id = _patient_id(database_url, resource_id)
    if patient_id is None:
        raise _not_found(resource_id)
    bundle = patient_everything(database_url, patient_id, start=start, end=end, granularity=granularity,
                                care_teams=list(client.care_teams), base_url=str(request.base_url).rstrip("/") + "/fhir")
    if bundle is None:
        raise _not_found(resource_id)
    return bundle


router = APIRouter(prefix="/fhir", tags=["FHIR (care systems)"])


@router.get("/metadata", response_class=FhirResponse, summary="CapabilityStatement of this read-only FHIR R4 server")
def metadata() -> FhirResponse:
    return FhirResponse({
        "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
        "date": "2026-12-02", "format": ["json"],
        "rest": [{"mode": "server", "security": {"description": "Bearer token of a care system (kidjamo fhir clients add)"},
                  "resource": [{"type": "Patient", "interaction": [{"code": "read"}],
                                "operation": [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]}]}],
    })


@router.get("/Patient/{resource_id}", response_class=FhirResponse, summary="Read one Patient")
def read(resource_id: str, request: Request, client: FhirClient = Depends(require_client)) -> FhirResponse:
    database_url = _database_url(request)
    patient_id = _patient_id(database_url, resource_id)
    patient = read_patient(database_url, patient_id, care_teams=list(client.care_teams)) if patient_id else None
    if patient is None:
        raise _not_found(resource_id)
    _audit(database_url, client, patient_id, {"read": "Patient"})
    return FhirResponse(patient)


@router.get("/Patient/{resource_id}/$everything", response_class=FhirResponse,
            summary="Everything on one patient in a window: Patient, Devices, Observations, Flags, Communications")
def everything(resource_id: str, request: Request, client: FhirClient = Depends(require_client),
               start: str | None = Query(None, description="FHIR date or dateTime; default end - 24 h"),
               end: str | None = Query(None, description="FHIR date or dateTime; default now"),
               granularity: str = Query("minute", description="minute: one Observation per vital and minute; reading: per 30-s reading")) -> FhirResponse:
    if granularity not in GRANULARITIES:
        raise FhirError(400, "invalid", f"granularity: expected one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    until = _moment(end, "end") or datetime.now(timezone.utc)
    since = _moment(start, "start") or until - DEFAULT_WINDOW
    if since >= until:
        raise FhirError(400, "invalid", f"start {since.isoformat()} must be before end {until.isoformat()}")
    if until - since > MAX_WINDOW[granularity]:
        raise FhirError(400, "too-costly", f"at most {MAX_WINDOW[granularity].days} days per request at {granularity} granularity")
    bundle = _everything(request, client, resource_id, since, until, granularity)
    counts: dict[str, int] = {}
    for entry in bundle["entry"]:
        counts[entry["resource"]["resourceType"]] = counts.get(entry["resource"]["resourceType"], 0) + 1
    patient_id = bundle["entry"][0]["resource"]["identifier"][0]["value"]
    _audit(_database_url(request), client, patient_id,
           {"read": "$everything", "start": since.isoformat(), "end": until.isoformat(), "granularity": granularity, "counts": counts})
    return FhirResponse(bundle)


def install(app) -> None:
    """Mount the FHIR routes and their OperationOutcome error answers on the service's app."""
    app.include_router(router)
    app.add_exception_handler(FhirError, lambda request, error: operation_outcome(error))
