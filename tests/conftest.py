"""Shared fixtures: a real embedded PostgreSQL (migrated once per session) and a temporary local lake.

Each test session gets its own ``KIDJAMO_HOME`` under pytest's temporary folder, so parallel
sessions and a developer's own ``.kidjamo`` never collide.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kidjamo.warehouse import migrations
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres
from kidjamo.lake.storage import Lake

# Keep the suite quiet and independent of the developer's environment.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
for variable in [name for name in os.environ if name.startswith("KIDJAMO_") and not name.startswith("KIDJAMO_TEST_")]:
    del os.environ[variable]
# Many tests give Settings a home of their own, with no embedded server in it, so their database
# counts as external: a pseudonym key strong enough for that (the refusal's own tests unset it).
os.environ["KIDJAMO_PSEUDONYM_KEY"] = "kidjamo-test-suite-pseudonym-key-0123456789"


def pytest_configure(config: pytest.Config) -> None:
    """Give the session its own KIDJAMO_HOME and Airflow environment before any test module loads.

    Airflow reads its configuration once, at first import; a test module that imports it (directly
    or through plugins/) must already see the session's AIRFLOW_HOME and metadata database.
    """
    import tempfile

    from kidjamo.cli.airflow_env import apply_airflow_environment

    home = Path(tempfile.mkdtemp(prefix="kidjamo-test-home-"))
    os.environ["KIDJAMO_HOME"] = str(home)
    apply_airflow_environment()
    config.kidjamo_home = home  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    home = getattr(config, "kidjamo_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def kidjamo_home(pytestconfig: pytest.Config) -> Path:
    return pytestconfig.kidjamo_home


@pytest.fixture(scope="session")
def postgres_server(kidjamo_home: Path):
    """A real PostgreSQL server for the whole session (embedded 18, or KIDJAMO_TEST_PG_BIN_DIR's)."""
    bin_dir = os.environ.get("KIDJAMO_TEST_PG_BIN_DIR") or None
    server = EmbeddedPostgres(kidjamo_home / "pg", bin_dir=bin_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def migrated_url(postgres_server: EmbeddedPostgres) -> str:
    """URL of a database with every migration applied (shared by the session: clean up what you add)."""
    url = postgres_server.url()
    migrations.migrate(url)
    return url


@pytest.fixture
def fresh_database_url(postgres_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """URL of a new, empty, migrated database for one test (dropped afterwards)."""
    from tests.databases import migrated_database

    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:50]
    with migrated_database(postgres_server, name) as url:
        yield url


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty local lake."""
    return Lake(f"file://{tmp_path / 'lake'}")


@pytest.fixture(scope="session")
def airflow_home(kidjamo_home: Path, migrated_url: str) -> Path:
    """A migrated Airflow metadata database (SQLite) under the session's KIDJAMO_HOME.

    The environment was set by ``pytest_configure``, before Airflow was first imported, so
    ``dag.test()`` and DagBag use it. The ``kidjamo_postgres`` connection points at the session's
    warehouse.
    """
    import subprocess
    import sys

    os.environ["AIRFLOW_CONN_KIDJAMO_POSTGRES"] = migrated_url
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], check=True, env=os.environ.copy(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return Path(os.environ["AIRFLOW_HOME"])


#: Debian's Chromium (a CI machine installs it: .ci/system-deps), headless, with no sandbox (containers)
#: and no background traffic to Google.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Playwright, for the tests marked ``browser`` (Airflow UI, care-team app)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
