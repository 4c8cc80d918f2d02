"""``python -m kidjamo.cli`` is the ``kidjamo`` command (the benchmarks stop their PostgreSQL with it)."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_runs_the_same_command_line():
    result = subprocess.run([sys.executable, "-m", "kidjamo.cli", "db", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "stop" in result.stdout
