"""Pseudonyms for the analytics schema: HMAC-SHA256 of a patient or device identifier.

The key is ``KIDJAMO_PSEUDONYM_KEY`` (settings ``pseudonym_key``); pseudonyms are computed here so
that the key never enters the database: whoever can read the database (or a dump of it) cannot
recompute a patient's pseudonym from their identifier.
"""

from __future__ import annotations

import hashlib
import hmac

import psycopg

PSEUDONYM_LENGTH = 32  # hex characters kept of the HMAC (128 bits)


def pseudonym(subject: str, identifier: str, key: str) -> str:
    """The keyed-hash pseudonym of a patient or device identifier."""
    message = f"{subject}:{identifier}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


def ensure_pseudonyms(connection: psycopg.Connection, key: str) -> int:
    """Give every patient and device without a pseudonym one; return how many were added."""
    missing = connection.execute(
        """
        SELECT 'patient', patient_id FROM kidjamo.patients AS p
        WHERE NOT EXISTS (SELECT 1 FROM kidjamo.pseudonyms AS s WHERE s.subject = 'patient' AND s.identifier = p.patient_id)
        UNION ALL
        SELECT 'device', device_id FROM kidjamo.devices AS d
        WHERE NOT EXISTS (SELECT 1 FROM kidjamo.pseudonyms AS s WHERE s.subject = 'device' AND s.identifier = d.device_id)
        """
    ).fetchall()
    if not missing:
        return 0
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO kidjamo.pseudonyms (subject, identifier, pseudonym) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(subject, identifier, pseudonym(subject, identifier, key)) for subject, identifier in missing],
        )
    return len(missing)
