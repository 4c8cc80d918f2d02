"""``python -m bench``: every benchmark, one after the other, each printing its own table."""

import importlib
import sys

BENCHMARKS = ["bench.floor", "bench.pipeline_minute", "bench.reprocess_day", "bench.airflow_minute", "bench.alert_latency",
              "bench.scale", "bench.warehouse_refresh", "bench.ingestion_load", "bench.metrics_scrape", "bench.backup_restore", "bench.care_pages"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"{name}: not present", file=sys.stderr)
            continue
        print(f"\n== {name}")
        module.main([])
