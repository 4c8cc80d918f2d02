"""Re-process one day of 1,000 sensors (2.88 M readings) in one run (DESIGN.md target: <= 200 s).

The day is landed minute by minute (1,440 landing partitions), then :func:`process_interval`
processes [day, day + 1) in one call — what ``kidjamo_reprocess`` does in one Airflow run. A day
takes minutes, so each size is measured once; the per-step split is printed with it, and the floor
of the same rows (``bench/floor.py``, hour by hour: each hour parsed, written and COPYed at once).
Usage: ``python -m bench.reprocess_day --sensors 1000 --hours 24``; with ``KIDJAMO_BENCH_PROFILE=DIR`` in
the environment, a pyinstrument profile of the run (text) is written to DIR.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

DAY = datetime(2026, 11, 26, tzinfo=timezone.utc)


def _child(sensors: int, hours: int) -> dict:
    from bench.fleet import land_minute, prepare
    from bench.floor import measure_floor
    from transforms.pipeline import process_interval

    url, lake, fleet = prepare(sensors)
    landed_at = time.perf_counter()
    readings = sum(land_minute(lake, fleet, DAY + timedelta(minutes=m + 1), files=1, hypoxia=False)
                   for m in range(hours * 60))
    landing_s = time.perf_counter() - landed_at
    with tempfile.TemporaryDirectory(prefix="kidjamo-floor-") as scratch:
        # Hour by hour, as process_interval chunks the day: the floor's memory stays out of the peak RSS.
        floor = sum(measure_floor(lake, url, DAY + timedelta(hours=h), Path(scratch), end=DAY + timedelta(hours=h + 1))["floor_s"]
                    for h in range(hours))
    profile_dir = os.environ.get("KIDJAMO_BENCH_PROFILE")
    profiler = None
    if profile_dir:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.01)
        profiler.start()
    started = time.perf_counter()
    counts = process_interval(DAY, DAY + timedelta(hours=hours), lake=lake, database_url=url, run_id="bench-day")
    total = time.perf_counter() - started
    if profiler:
        profiler.stop()
        Path(profile_dir, f"reprocess_day_{sensors}x{hours}h.txt").write_text(profiler.output_text(unicode=True))
    return {
        "sensors": sensors, "hours": hours, "readings": readings, "silver_rows": counts["to_silver"]["silver_rows"],
        "total_s": round(total, 1), "floor_s": round(floor, 1), "landing_setup_s": round(landing_s, 1),
        "steps_s": {name: round(step.get("duration_s", 0), 1) for name, step in counts.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _report(result: dict) -> str:
    from bench.fleet import load_average
    from bench.floor import ratio

    return (f"{result['sensors']} sensors x {result['hours']} h = {result['readings']:,} readings re-processed in one run: "
            f"{result['total_s']} s (target <= 200 s for 24 h), {ratio(result['total_s'], result['floor_s'])}x the floor "
            f"({result['floor_s']} s); peak RSS {result['peak_rss_mb']} MB; load average {load_average()}\n"
            "per step (s, summed over chunks): " + ", ".join(f"{k} {v}" for k, v in result["steps_s"].items()))


def main(argv: list[str] | None = None) -> dict | None:
    from bench.fleet import child_or_parent

    return child_or_parent("bench.reprocess_day", __doc__.splitlines()[0], argv, {"sensors": 1000, "hours": 24},
                           _child, _report)


if __name__ == "__main__":
    main()
