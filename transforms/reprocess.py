"""Re-processing an interval of arrival minutes from raw, as the ``kidjamo_reprocess`` DAG does.

Raw is the byte-exact replay source: :func:`reprocess` runs every pipeline step over [start, end)
in one call, rewriting what the minute runs wrote for those minutes. :func:`parse_interval` turns
the DAG's params (or a CLI's arguments) into that interval, with errors that say what to fix.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from kidjamo.storage import Lake

#: The longest interval one run may take: a week of minutes keeps a run within its timeout.
MAX_INTERVAL = timedelta(days=7)


def parse_interval(start: str, end: str) -> tuple[datetime, datetime]:
    """The UTC interval [start, end) of two ISO 8601 date-times, or a ValueError that says what to fix."""
    bounds = {}
    for name, text in (("start", start), ("end", end)):
        try:
            moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} {text!r} is not an ISO 8601 date-time such as 2026-11-26T00:00:00+00:00") from None
        if moment.tzinfo is None:
            raise ValueError(f"{name} {text!r} has no time zone: add +00:00 (UTC) or another offset")
        if moment.second or moment.microsecond:
            raise ValueError(f"{name} {text!r} is not on a minute boundary: arrival minutes are whole minutes")
        bounds[name] = moment.astimezone(timezone.utc)
    if bounds["end"] <= bounds["start"]:
        raise ValueError(
            f"end ({bounds['end']:%Y-%m-%d %H:%M} UTC) must be after start ({bounds['start']:%Y-%m-%d %H:%M} UTC): "
            "kidjamo_reprocess re-processes arrival minutes [start, end)")
    if bounds["end"] - bounds["start"] > MAX_INTERVAL:
        raise ValueError(f"[start, end) spans {bounds['end'] - bounds['start']}, more than {MAX_INTERVAL.days} days: "
                         "split it into several runs")
    return bounds["start"], bounds["end"]


def reprocess(start: datetime, end: datetime, *, lake: Lake, database_url: str, run_id: str) -> dict:
    """Run every pipeline step over arrival minutes [start, end) from raw; return per-step counts."""
    from transforms.pipeline import process_interval

    return process_interval(start, end, lake=lake, database_url=database_url, run_id=run_id)
