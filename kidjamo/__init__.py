"""Kidjamo vitals pipeline: the shared core (settings, storage, database, command line)."""
