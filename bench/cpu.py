"""CPU seconds of the benchmark's own process and of its embedded PostgreSQL server.

On this shared machine wall time moves with the other tenants' load; CPU time much less. The
server's CPU is the postmaster's own and its reaped children's (backends that have exited), plus
its live children's (``/proc``, Linux only), so it counts every backend the pipeline opened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd on (state, ppid, …)


def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server process behind ``database_url`` (None when it is not on this machine)."""
    from kidjamo.warehouse.database import connect

    with connect(database_url) as connection:
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        return int(_stat(backend)[1])
    except OSError:
        return None


def server_cpu_seconds(postmaster: int | None) -> float:
    """User + system CPU seconds of the server so far (0.0 when it cannot be read)."""
    if postmaster is None:
        return 0.0
    try:
        fields = _stat(postmaster)
    except OSError:
        return 0.0
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except OSError:
            continue
        if int(child[1]) == postmaster:
            ticks += int(child[11]) + int(child[12])
    return ticks / _TICK


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    return time.process_time()
