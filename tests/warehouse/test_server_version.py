"""The suite runs on the PostgreSQL it was asked for (KIDJAMO_TEST_PG_BIN_DIR), not silently on another."""

import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest


@pytest.mark.skipif(not os.environ.get("KIDJAMO_TEST_PG_BIN_DIR"), reason="runs on the default embedded PostgreSQL")
def test_the_server_is_the_one_of_kidjamo_test_pg_bin_dir(migrated_url):
    binary = Path(os.environ["KIDJAMO_TEST_PG_BIN_DIR"]) / "postgres"
    expected = re.search(r"(\d+)\.", subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout).group(1)
    with psycopg.connect(migrated_url) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()[0]
    assert version[:2] == expected
