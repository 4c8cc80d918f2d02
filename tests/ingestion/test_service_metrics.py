"""The service's /metrics (prometheus-client): refusals by reason, group commits, journal backlog."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def _scrape(service) -> dict[tuple, float]:
    text = httpx.get(f"{service.url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_refused_requests_are_counted_by_reason(service, post, new_reading, fleet, secrets):
    device = fleet.device_ids[1]
    before = _scrape(service)
    assert post(service, device, "not-the-secret", new_reading(1)).status_code == 401
    assert httpx.post(f"{service.url}/v1/vitals", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    after = _scrape(service)
    for reason in ("unauthenticated", "not_json"):
        key = ("kidjamo_ingest_refusals_total", (("reason", reason),))
        assert after[key] - before.get(key, 0) == 1


def test_group_commit_latency_and_journal_backlog_are_exposed(service, post, new_reading, fleet, secrets):
    device = fleet.device_ids[2]
    assert post(service, device, secrets[device], new_reading(2)).status_code == 202
    samples = _scrape(service)
    assert samples[("kidjamo_ingest_group_commits_total", ())] >= 1
    assert samples[("kidjamo_ingest_flush_duration_seconds_count", ())] >= 1
    # The part is either still waiting in the journal for its minute to close, or already published.
    assert samples[("kidjamo_ingest_journal_unpublished_parts", ())] + samples[("kidjamo_ingest_landing_files_total", ())] >= 1
    assert samples[("kidjamo_ingest_journal_waiting_readings", ())] == 0  # the 202 came after the flush
