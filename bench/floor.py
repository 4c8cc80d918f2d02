"""The physical floor of one minute on this machine (DESIGN.md "Targets").

For the readings of one landed arrival minute, the least any pipeline must do: read the landing
files, parse the JSON with Arrow, write the rows as one Parquet file, and COPY them into a table
with no index, no constraint and no trigger. Every benchmark measures it on the same rows in the
same run and reports its own figure as a multiple of it, so that a busy machine (this one is
shared) moves both figures together.

Usage: ``python -m bench.floor --sensors 10000 100000`` (median of ``--repeat`` runs per size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from kidjamo.warehouse.database import connect
from kidjamo.lake.partitions import minute_partition, minutes_between
from kidjamo.lake.storage import Lake

FIRST_ARRIVAL = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
FLOOR_TABLE = "public.bench_floor"

_VITALS = pa.struct([(name, pa.float64()) for name in (
    "spo2", "heart_rate", "temperature", "ambient_temp", "respiratory_rate", "hydration_pct", "activity_level",
    "pain_scale")])
_METADATA = pa.struct([("battery_level", pa.float64()), ("signal_quality", pa.float64()),
                       ("firmware_version", pa.string())])
#: The landing payload as Arrow reads it (DESIGN.md "Reading"); the timestamp is parsed by Arrow.
PAYLOAD = pa.schema([("device_id", pa.string()), ("patient_id", pa.string()),
                     ("timestamp", pa.timestamp("us", tz="UTC")), ("message_id", pa.string()),
                     ("vitals", _VITALS), ("metadata", _METADATA)])


def _flat(table: pa.Table) -> pa.Table:
    """One column per field, as a warehouse row holds them (vitals.spo2 -> spo2)."""
    columns, names = [], []
    for name in table.column_names:
        column = table[name]
        if pa.types.is_struct(column.type):
            for child in column.type:
                columns.append(pc.struct_field(column, child.name))
                names.append(child.name)
        else:
            columns.append(column)
            names.append("measured_at" if name == "timestamp" else name)
    return pa.Table.from_arrays(columns, names=names)


def ensure_floor_table(database_url: str) -> None:
    """The unindexed target table of the floor's COPY (created once per database)."""
    columns = ", ".join(
        f"{field.name} {'timestamptz' if pa.types.is_timestamp(field.type) else 'float8' if pa.types.is_floating(field.type) else 'text'}"
        for field in _flat(PAYLOAD.empty_table()).schema)
    with connect(database_url) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} ({columns})")


def measure_floor(lake: Lake, database_url: str, arrival_minute: datetime, scratch: Path,
                  end: datetime | None = None) -> dict:
    """Seconds to read, parse, write as Parquet and COPY the landing files of ``arrival_minute``.

    With ``end``, of every arrival minute in [arrival_minute, end) at once (one Parquet file, one
    COPY: the floor of re-processing a wide interval). Run it before the pipeline consumes the
    minutes (to_raw moves the files away). The rows COPYed are removed again (TRUNCATE, outside the
    timing). Returns ``{"readings", "floor_s"}``.
    """
    from kidjamo.warehouse.bulk import copy_csv  # the pipeline's own COPY: the floor measures the same transfer

    ensure_floor_table(database_url)
    minutes = minutes_between(arrival_minute, end) if end else [arrival_minute]
    files = [f.path for minute in minutes for f in lake.list_files(f"landing/vitals/{minute_partition(minute)}/")]
    options = pajson.ParseOptions(explicit_schema=PAYLOAD, unexpected_field_behavior="ignore")
    started = time.perf_counter()
    table = _flat(pa.concat_tables([pajson.read_json(pa.py_buffer(lake.read_bytes(path)), parse_options=options)
                                    for path in files]))
    pq.write_table(table, scratch / f"floor-{arrival_minute:%H%M}.parquet")
    with connect(database_url, application_name="kidjamo-floor") as connection:
        copy_csv(connection, FLOOR_TABLE, table)
    floor_s = time.perf_counter() - started
    with connect(database_url) as connection:
        connection.execute(f"TRUNCATE {FLOOR_TABLE}")
    return {"readings": table.num_rows, "floor_s": floor_s}


def ratio(seconds: float, floor_s: float) -> float:
    """``seconds`` as a multiple of the floor, rounded for a table."""
    return round(seconds / floor_s, 1) if floor_s else float("nan")


def _child(sensors: int, repeat: int) -> dict:
    from bench.fleet import land_minute, prepare

    url, lake, fleet = prepare(sensors)
    floors = []
    with tempfile.TemporaryDirectory(prefix="kidjamo-floor-") as scratch:
        for index in range(repeat + 1):
            arrival = FIRST_ARRIVAL + timedelta(minutes=index)
            land_minute(lake, fleet, arrival)
            floors.append(measure_floor(lake, url, arrival, Path(scratch)))
    measured = floors[1:]  # the first pays the imports and the first connection
    return {"sensors": sensors, "readings": measured[0]["readings"],
            "floor_s": round(statistics.median(f["floor_s"] for f in measured), 4),
            "runs_s": [round(f["floor_s"], 4) for f in measured]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.sensors[0], args.repeat)))
        return []
    from bench.fleet import load_average, run_in_fresh_home

    results = [run_in_fresh_home("bench.floor", ["--sensors", str(n), "--repeat", str(args.repeat)]) for n in args.sensors]
    print(f"floor (Arrow JSON parse + Parquet write + COPY into an unindexed table); load average {load_average()}")
    for result in results:
        print(f"{result['sensors']:>8} sensors {result['readings']:>8} readings: median {result['floor_s']:.3f} s "
              f"(runs {result['runs_s']})")
    return results


if __name__ == "__main__":
    main()
