"""Advisory locks in PostgreSQL that make writers of one lake partition take turns.

A raw partition's ``_manifest.json`` is read, extended and rewritten by whoever copies landing files
into it (the minute run, a backfill, a re-process) or rewrites its files (erasure). Two of them at
once would each write the manifest they read, and the second would drop the first one's entries:
a raw file that accounting cannot see. The lake (a folder, or S3) has no lock of its own, the
warehouse has: every writer of a partition holds ``pg_advisory_lock`` on its name meanwhile.
A session-level lock on its own connection, so a killed writer releases it with its connection.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg

from kidjamo.warehouse.database import libpq_url


class PartitionLocks:
    """One connection holding the advisory locks of the partitions a step writes, one at a time.

    ``PartitionLocks(None)`` locks nothing (a lake used without a warehouse, as in some tests and tools).
    """

    def __init__(self, database_url: str | None):
        self.database_url = database_url
        self._connection: psycopg.Connection | None = None

    def __enter__(self) -> "PartitionLocks":
        if self.database_url is not None:
            self._connection = psycopg.connect(libpq_url(self.database_url), autocommit=True,
                                               application_name="kidjamo-partition-lock")
        return self

    def __exit__(self, *exc) -> None:
        if self._connection is not None:
            self._connection.close()  # also releases any lock still held
            self._connection = None

    @contextmanager
    def hold(self, partition_path: str) -> Iterator[None]:
        """Hold the lock of one partition (e.g. ``raw/vitals/dt=…/hh=…/mm=…``) for the ``with`` block."""
        if self._connection is None:
            yield
            return
        key = f"kidjamo.lake:{partition_path}"
        self._connection.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        try:
            yield
        finally:
            self._connection.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
