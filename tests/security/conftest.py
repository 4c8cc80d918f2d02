"""Fixtures of the security tests: the ingestion tests' real services and fleet, and login roles per component."""

from __future__ import annotations

import pytest

from tests.ingestion.conftest import fleet, ingest_database, new_reading, post, secrets  # noqa: F401 - fixtures
from tests.security.support import login_url, logins


@pytest.fixture(scope="module")
def ingest_login_url(ingest_database, request):  # noqa: F811 - the imported fixture
    """The module's database reached as a login role of kidjamo_ingest only (what the service runs as)."""
    login = "sec_ingest_" + request.module.__name__.rsplit(".", 1)[-1][5:25]
    with logins(ingest_database, {login: "kidjamo_ingest"}):
        yield login_url(ingest_database, login)
