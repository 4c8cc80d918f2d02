"""The fast path: alerts within seconds of readings arriving, before the minute batch.

One rule engine, two clocks: the fast path judges every rule that needs only the reading, the
patient registry and the stored baseline (all of ``transforms/clinical/rules.yaml`` but the
cross-reading rules of :data:`~transforms.clinical.matching.CROSS_READING_RULES`) with the same
matching code as the batch, on readings enriched as silver enriches them. It keeps bronze's
checks that decide whether a reading counts at all: the timestamp window (no alert from a reading
dated a year ahead), an active device of the named patient, and the plausibility ranges (an
implausible value is left out, as bronze leaves it out). The minute batch later attaches to the
same open alerts, so nothing is counted or notified twice.

:class:`FastPath` batches the readings the ingestion service accepted every
``FLUSH_INTERVAL_S`` and judges each batch in one vectorized pass in a worker *process*: a batch
costs about 0.1 s of pandas work whatever its size, and on a thread of the service that work held
the GIL the service's event loop needs to answer requests (measured with bench/ingestion_load.py:
it doubled the service's CPU per request and multiplied its latency under load).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from kidjamo.lake.schema import RANGES
from kidjamo.settings import Settings
from kidjamo.warehouse.database import connect
from transforms.alerts.evaluate import CANDIDATE_COLUMNS, candidates_from_matches, match_and_clear
from transforms.alerts.store import upsert_candidates
from transforms.bronze import outside_timestamp_window
from transforms.clinical.baselines import patient_baselines
from transforms.clinical.matching import CROSS_READING_RULES, MATCHERS
from transforms.clinical.rules import RuleSet
from transforms.registry import load_registry
from transforms.silver import enrich_readings

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2  # readings wait at most this long for their batch
CONTEXT_REFRESH_S = 60.0  # registry and stored baselines are re-read this often
PARENT_CHECK_S = 1.0  # the worker process checks this often that the service still runs


def single_reading_rules(rules: RuleSet) -> list[str]:
    """The rules the fast path judges: every matcher that needs no earlier reading."""
    return [rule_id for rule_id in MATCHERS if rule_id in rules.rules and rule_id not in CROSS_READING_RULES]


@dataclass
class PatientContext:
    """What the fast path joins readings with: the registry and each patient's baselines."""

    registry: pd.DataFrame
    baselines: pd.DataFrame
    loaded_at: float = field(default_factory=time.monotonic)

    @classmethod
    def load(cls, database_url: str, rules: RuleSet, at: datetime) -> "PatientContext":
        registry = load_registry(database_url)
        return cls(registry, patient_baselines(database_url, registry, at=at, rules=rules))


def readings_frame(readings: list[dict], context: PatientContext, *, received_at: datetime, rules: RuleSet,
                   settings: Settings) -> pd.DataFrame:
    """Payloads as silver-like rows; readings bronze would quarantine as a whole are left out."""
    if not readings:
        return pd.DataFrame()
    arrival_minute = received_at.astimezone(timezone.utc).replace(second=0, microsecond=0)
    rows = []
    for reading in readings:
        row = {"device_id": reading.get("device_id"), "patient_id": reading.get("patient_id"),
               "timestamp": reading.get("timestamp"), "message_id": reading.get("message_id")}
        for (section, name), _ in RANGES.items():
            value = (reading.get(section) or {}).get(name)
            row[name] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    for (_, name), (_, low, high) in RANGES.items():
        frame[name] = frame[name].where((frame[name] >= low) & (frame[name] <= high))
    frame["measured_at"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601", errors="coerce")
    frame["arrival_minute"] = pd.Timestamp(arrival_minute)
    future, too_late = outside_timestamp_window(frame["measured_at"], frame["arrival_minute"], settings.lateness,
                                                settings.future_tolerance)
    devices = context.registry.loc[context.registry["device_active"].astype(bool)]
    registered = frame.merge(devices[["device_id", "patient_id"]], on=["device_id", "patient_id"], how="left",
                             indicator=True)["_merge"].eq("both").to_numpy()
    kept = frame.loc[frame["measured_at"].notna().to_numpy() & ~future & ~too_late & registered].copy()
    if kept.empty:
        return kept
    kept["raw_file"], kept["record_index"] = None, None
    return enrich_readings(kept.reset_index(drop=True), context.registry, context.baselines, settings.late_after, rules)


def evaluate_fast_path(readings: list[dict], context: PatientContext, *, received_at: datetime, rules: RuleSet,
                       settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates and matches of the single-reading rules over accepted payloads (pure)."""
    frame = readings_frame(readings, context, received_at=received_at, rules=rules, settings=settings)
    if frame.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS), pd.DataFrame(columns=["patient_id", "rule_id", "device_id", "measured_at"])
    matches, _ = match_and_clear(frame, None, rules=rules, only=single_reading_rules(rules))
    candidates = candidates_from_matches(matches, rules)
    for evidence in candidates["evidence"]:
        evidence["fast_path"] = True
    return candidates, matches[["patient_id", "rule_id", "device_id", "measured_at"]]


def raise_fast_path_alerts(database_url: str, readings: list[dict], *, received_at: datetime, rules: RuleSet,
                           settings: Settings, context: PatientContext | None = None) -> dict:
    """Judge accepted payloads at once and bring ``kidjamo.alerts`` up to date (opened, updated, escalated)."""
    context = context or PatientContext.load(database_url, rules, received_at)
    candidates, matches = evaluate_fast_path(readings, context, received_at=received_at, rules=rules, settings=settings)
    if candidates.empty:
        return {"candidates": 0, "opened": 0, "updated": 0, "escalated": 0, "patients": set()}
    with connect(database_url, application_name="kidjamo-fast-path") as connection:
        counts = upsert_candidates(connection, candidates, matches, at=received_at, run_id=None, source="fast_path",
                                   settings=settings)
    return {"candidates": len(candidates), **counts, "patients": set(candidates["patient_id"])}


def raise_fast_path_alert(database_url: str, reading: dict, *, received_at: datetime, rules: RuleSet,
                          settings: Settings) -> int | None:
    """One payload through the fast path; the most severe alert it left open, or None."""
    raise_fast_path_alerts(database_url, [reading], received_at=received_at, rules=rules, settings=settings)
    with connect(database_url, application_name="kidjamo-fast-path") as connection:
        row = connection.execute(
            "SELECT a.alert_id FROM kidjamo.alert_readings AS r JOIN kidjamo.alerts AS a USING (alert_id)"
            " WHERE r.device_id = %s AND r.measured_at = %s AND a.status <> 'resolved'"
            " ORDER BY kidjamo.severity_rank(a.severity) DESC, a.alert_id LIMIT 1",
            (reading.get("device_id"), pd.Timestamp(reading["timestamp"]).to_pydatetime()),
        ).fetchone()
    return row[0] if row else None


# --- the worker process -------------------------------------------------------------------------------
_worker: dict = {}  # in the worker process: its rules, settings and cached patient context


def _start_worker(rules: RuleSet, settings: Settings, parent_pid: int) -> None:
    _worker.update(rules=rules, settings=settings, context=None)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """End the worker once its service is gone, even killed (an orphan would hold a connection slot)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _judge_in_worker(database_url: str, readings: list[dict], received_at: datetime) -> set:
    """One batch in the worker process: the patients it raised or updated alerts for."""
    rules, settings, context = _worker["rules"], _worker["settings"], _worker["context"]
    if context is None or time.monotonic() - context.loaded_at > CONTEXT_REFRESH_S:
        context = _worker["context"] = PatientContext.load(database_url, rules, received_at)
    return raise_fast_path_alerts(database_url, readings, received_at=received_at, rules=rules, settings=settings,
                                  context=context)["patients"]


class FastPath:
    """Accepted readings in, alert rows out within a fraction of a second.

    One thread collects the readings into batches; each batch is judged in a worker process (spawned,
    not forked: the service has threads and open connections), so the judging never holds the
    service's GIL. A worker that died is replaced and the batch judged again (once: a batch that kills
    its worker twice counts as failed).
    ``on_batch(readings, raised_patients, failed, started_times)`` reports each judged batch
    (the ingestion service turns it into metrics).
    """

    def __init__(self, database_url: Callable[[], str], rules: RuleSet, settings: Settings,
                 on_batch: Callable[[list[dict], set, bool, list[float]], None] | None = None):
        self._database_url = database_url
        self.rules = rules
        self.settings = settings
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fast-path", daemon=True)
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._executor = self._new_worker()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _new_worker(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                       initargs=(self.rules, self.settings, os.getpid()))
        executor.submit(time.monotonic)  # start the process now, not on the first alerting reading
        return executor

    def submit(self, readings: list[dict], received_at: datetime, started: float) -> None:
        """Queue accepted readings (never blocks the caller)."""
        if readings:
            self._queue.put((readings, received_at, started))

    def _take_batch(self) -> list[tuple]:
        try:
            first = self._queue.get(timeout=FLUSH_INTERVAL_S)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + FLUSH_INTERVAL_S
        while time.monotonic() < deadline:
            try:
                batch.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            readings = [reading for readings, _, _ in batch for reading in readings]
            received_at = max(received for _, received, _ in batch)
            started = [began for readings, _, began in batch for _ in readings]
            raised, failed = set(), True
            for attempt in (1, 2):  # a worker found dead is replaced and the batch judged again, once
                try:
                    raised = self._executor.submit(_judge_in_worker, self._database_url(), readings, received_at).result()
                    failed = False
                except BrokenProcessPool:
                    log.error("the fast-path worker process died (attempt %d for %d readings); starting a new one",
                              attempt, len(readings))
                    self._executor = self._new_worker()
                    continue
                except Exception:
                    log.exception("fast-path batch of %d readings failed", len(readings))
                break
            if self.on_batch is not None:
                self.on_batch(readings, raised, failed, started)
