"""How a landing/raw file splits into records: one JSON object, a JSON array, or NDJSON (maybe gzipped).

Each record comes out as one line of JSON text (bytes), so the rest of the pipeline sees NDJSON
whatever the producer sent. A file that cannot be decoded at all still yields its lines, which the
bronze step then quarantines one by one (``invalid_json``): nothing is dropped.
"""

from __future__ import annotations

import gzip
import json
import zlib

PRODUCER_SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")


def is_in_progress(name: str) -> bool:
    """Names starting with ``_`` or ``.`` are being written (or are bookkeeping): never read them."""
    return name.startswith(("_", "."))


def is_landing_file(name: str) -> bool:
    return not is_in_progress(name) and name.endswith(PRODUCER_SUFFIXES)


def decompress(data: bytes, name: str) -> bytes:
    """The file's text bytes (gunzipped for ``.gz``); an undecodable gzip is returned as is."""
    if name.endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return data
    return data


def split_records(data: bytes, name: str) -> list[bytes]:
    """One JSON text per record, in file order."""
    text = decompress(data, name).strip()
    if not text:
        return []
    if text[:1] == b"[" or (text[:1] == b"{" and not name.endswith((".ndjson", ".ndjson.gz"))):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            document = None  # not one JSON document (or nested too deep to parse): read it line by line below
        if isinstance(document, list):
            return [json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode() for item in document]
        if isinstance(document, dict):
            return [text if b"\n" not in text else json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()]
    return [line.strip() for line in text.split(b"\n") if line.strip()]
