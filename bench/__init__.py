"""Benchmarks against DESIGN.md's targets. Run them all with ``make bench`` (``python -m bench``)."""
