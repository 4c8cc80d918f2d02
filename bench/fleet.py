"""Shared set-up of the benchmarks: a migrated warehouse with a registered fleet, and landed minutes."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import landing_path, table_ndjson
from kidjamo.warehouse import migrations
from kidjamo.warehouse.database import ensure_database
from kidjamo.lake.storage import Lake
from kidjamo.settings import get_settings
from transforms.registry import import_registry


def prepare(sensors: int, seed: int = 42) -> tuple[str, Lake, Fleet]:
    """Start (or reuse) the embedded PostgreSQL of $KIDJAMO_HOME, migrate it and register the fleet."""
    url = ensure_database()
    migrations.migrate(url)
    fleet = Fleet.generate(sensors, seed=seed)
    registry_csv = os.path.join(os.environ["KIDJAMO_HOME"], "registry.csv")
    fleet.write_registry_csv(registry_csv)
    import_registry(registry_csv, url, pseudonym_key=get_settings().pseudonym_key)
    return url, Lake.from_settings(), fleet


def land_minute(lake: Lake, fleet: Fleet, arrival: datetime, *, files: int = 20, hypoxia: bool = True) -> int:
    """Land the readings measured in the minute before ``arrival`` as ``files`` NDJSON files."""
    table = fleet.readings_table(arrival - timedelta(minutes=1), arrival, hypoxia_patient=hypoxia)
    for part in range(files):
        chunk = {name: values[part::files] for name, values in table.items()}
        lake.write_bytes(landing_path(arrival, f"bench-{part:03d}"), table_ndjson(fleet, chunk))
    return len(table["patient"])


def land_minute_in_child(lake: Lake, fleet: Fleet, arrival: datetime, **options) -> int:
    """:func:`land_minute` in a forked process: generating a large fleet's readings (hundreds of MB
    of Python objects and NDJSON text) leaves none of its memory in the measuring process's RSS."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: land, report the count, leave without running the parent's clean-ups
        code = 1
        try:
            os.close(reader)
            os.write(writer, str(land_minute(lake, fleet, arrival, **options)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not text:
        raise RuntimeError(f"landing the minute {arrival.isoformat()} failed in its child process")
    return int(text)


class PeakMemory:
    """The measuring process's peak RSS over a stretch of code (Linux: VmHWM, reset by ``clear_refs``)."""

    def __enter__(self) -> "PeakMemory":
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # the peak becomes the current RSS
        self.peak_mb = None
        return self

    def __exit__(self, *exc) -> None:
        with open("/proc/self/status") as status:
            self.peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def run_in_fresh_home(module: str, args: list[str]) -> dict:
    """Run ``python -m module --child ARGS`` against a new KIDJAMO_HOME; return the JSON it prints last.

    A fresh process per measurement: its peak RSS is the step's own, and no state leaks between sizes.
    """
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kidjamo-bench-") as home:
        environment = {**os.environ, "KIDJAMO_HOME": home}
        environment.pop("KIDJAMO_DATABASE_URL", None)
        try:
            output = subprocess.run([sys.executable, "-m", module, "--child", *args], env=environment,
                                    capture_output=True, text=True)
            if output.returncode != 0:
                raise RuntimeError(f"{module} failed:\n{output.stderr[-3000:]}")
            return json.loads(output.stdout.strip().splitlines()[-1])
        finally:
            stopped = subprocess.run([sys.executable, "-m", "kidjamo.cli", "db", "stop"], env=environment,
                                     capture_output=True, text=True)
            if stopped.returncode != 0:  # a server left running would skew every later measurement
                raise RuntimeError(f"could not stop the benchmark's PostgreSQL:\n{stopped.stderr[-2000:]}")


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, printed beside every figure (the machine is shared)."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def child_or_parent(module: str, description: str, argv: list[str] | None, options: dict[str, int], child,
                    report) -> dict | None:
    """A benchmark's command line: integer ``--<option>``s (defaults in ``options``) and the hidden ``--child``.

    With ``--child`` (the measuring process) print ``child(**options)`` as JSON and return None; otherwise
    run the module again as a child in a fresh KIDJAMO_HOME (:func:`run_in_fresh_home`), print
    ``report(result)`` and return the result.
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(description=description)
    for name, default in options.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = vars(parser.parse_args(argv))
    values = {name: args[name] for name in options}
    if args["child"]:
        print(json.dumps(child(**values)))
        return None
    result = run_in_fresh_home(module, [text for name, value in values.items() for text in (f"--{name}", str(value))])
    print(report(result))
    return result

