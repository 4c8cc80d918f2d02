"""The ingestion service's Prometheus metrics (``GET /metrics``), kept with ``prometheus-client``.

Each service instance has its own :class:`CollectorRegistry`, so several apps in one process (the
tests) never share counters. Refused requests are counted by reason, named after the status code the
sensor got (DESIGN.md's order of checks), so that an alert rule can tell a misconfigured fleet (401,
403) from overload (429) or an outage (503, 500).
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ingestion.landing_writer import FlushStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Status code of a refused request -> the reason label of kidjamo_ingest_refusals_total.
REFUSAL_REASONS = {
    401: "unauthenticated", 403: "forbidden", 413: "too_large", 415: "not_json", 422: "invalid",
    429: "rate_limited", 500: "internal_error", 503: "unavailable",
}
FAST_PATH_RESULTS = ("raised", "not_raised", "failed")
OUTCOMES = ("accepted", "duplicate", "rejected")


class ServiceMetrics:
    """Counters, histograms and gauges of one ingestion service instance."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("kidjamo_ingest_requests", "HTTP requests to POST /v1/vitals by status code.",
                                ["status"], registry=r)
        self.refusals = Counter("kidjamo_ingest_refusals", "Requests refused (nothing stored), by reason.",
                                ["reason"], registry=r)
        self.readings = Counter("kidjamo_ingest_readings", "Readings received, by outcome (accepted, duplicate, rejected).",
                                ["outcome"], registry=r)
        self.request_seconds = Histogram("kidjamo_ingest_request_duration_seconds",
                                         "Time from request to answer of POST /v1/vitals.", buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.group_commits = Counter("kidjamo_ingest_group_commits",
                                     "Durable parts written (one per group commit; 202s wait for them).", registry=r)
        self.flush_seconds = Histogram("kidjamo_ingest_flush_duration_seconds",
                                       "Group-commit latency: time to make one part durable.", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.landing_files = Counter("kidjamo_ingest_landing_files",
                                     "Landing files published (one per minute and instance).", registry=r)
        self.landing_readings = Counter("kidjamo_ingest_landing_readings", "Readings in published landing files.",
                                        registry=r)
        self.fast_path = Counter("kidjamo_ingest_fast_path", "Accepted readings judged by the fast path, by result (raised: an alert row).",
                                 ["result"], registry=r)
        self.fast_path_seconds = Histogram("kidjamo_ingest_fast_path_duration_seconds",
                                           "Time from receiving a critical reading to its alert row.",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.journal_parts = Gauge("kidjamo_ingest_journal_unpublished_parts",
                                   "Durable parts not yet merged into their minute's landing file.", registry=r)
        self.journal_readings = Gauge("kidjamo_ingest_journal_waiting_readings",
                                      "Readings waiting for their group commit (their requests have no answer yet).",
                                      registry=r)
        for outcome in OUTCOMES:  # every series exists from the start, so rates work from the first scrape
            self.readings.labels(outcome)
        for result in FAST_PATH_RESULTS:
            self.fast_path.labels(result)

    def watch_journal(self, unpublished_parts: Callable[[], int], waiting_readings: Callable[[], int]) -> None:
        """Read the journal backlog from the landing writer at each scrape."""
        self.journal_parts.set_function(unpublished_parts)
        self.journal_readings.set_function(waiting_readings)

    def on_request(self, status: int, seconds: float) -> None:
        self.requests.labels(str(status)).inc()
        self.request_seconds.observe(seconds)
        if status >= 300:
            self.refusals.labels(REFUSAL_REASONS.get(status, str(status))).inc()

    def on_readings(self, outcome: str, count: int) -> None:
        if count:
            self.readings.labels(outcome).inc(count)

    def on_fast_path(self, result: str, count: int = 1, seconds: float | None = None) -> None:
        self.fast_path.labels(result).inc(count)
        if seconds is not None:
            self.fast_path_seconds.observe(seconds)

    def on_flush(self, stats: FlushStats) -> None:
        self.group_commits.inc()
        self.flush_seconds.observe(stats.seconds)

    def on_publish(self, stats: FlushStats) -> None:
        self.landing_files.inc()
        self.landing_readings.inc(stats.readings)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
