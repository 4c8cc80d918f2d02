"""Benchmarks against the targets of the README's "Performance" table. Run them all with ``make bench`` (``python -m bench``)."""
