"""Great Expectations suites, one per layer gate, and the gate runner.

Nothing here configures anything when imported: every entry point (``build_suite``, ``run_gate``,
``build_data_docs``) calls :func:`configure` before Great Expectations is first imported.
"""

from __future__ import annotations

import logging
import os


def configure() -> None:
    """Quiet Great Expectations: no usage analytics, warnings only (it floods task logs otherwise).

    Must run before ``great_expectations`` is first imported (the analytics switch is read then);
    calling it again changes nothing.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
