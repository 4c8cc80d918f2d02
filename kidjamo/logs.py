"""JSON logs: one object per line, from the service, the CLI, the exporter and every pipeline step.

:func:`configure_logging` (called once by each ``kidjamo`` command) sends both structlog events and
the standard library's records through one structlog formatter, so every line is a JSON object with
``time`` (UTC, ISO 8601), ``level``, ``component``, ``logger`` and ``event``, plus whatever context
is bound: ``run_id``, ``step``, ``arrival_minute``, ``shard`` (pipeline), counts and durations.
Inside Airflow tasks nothing is configured here: Airflow's own structlog set-up renders the same
events (with the same fields) into its task logs.

Privacy: log lines carry identifiers of runs, files, devices and alerts, counts and durations —
never a patient identifier, a name, a device secret or a vital value (``tests/ops/test_log_privacy.py``
checks a whole minute at DEBUG level). The level applies to the project's own loggers; libraries
stay at WARNING, since at DEBUG some echo SQL parameters or HTTP headers.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import IO, Iterator

import structlog

#: Loggers of this project (the level given to configure_logging applies to them).
PROJECT_LOGGERS = ("kidjamo", "ingestion", "transforms", "expectations", "plugins", "dags", "bench")
#: Libraries are quieter: at DEBUG, some log SQL parameters or HTTP headers.
LIBRARY_LEVEL = logging.WARNING

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
]


def _route_structlog_to_stdlib() -> None:
    """structlog events become standard-library records whose extra fields are the event's key-values.

    Then one handler formats everything, and tests (caplog) and hosts that configure the standard
    library (Airflow's task runner, when it has not configured structlog itself) see our events too.
    """
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


if not structlog.is_configured():  # Airflow configures structlog in its task processes: keep theirs
    _route_structlog_to_stdlib()


def configure_logging(component: str, level: str | int = "INFO", *, stream: IO[str] | None = None) -> None:
    """Send every log record of this process to ``stream`` (stderr) as one JSON object per line.

    ``component`` names the process (``ingestion``, ``pipeline``, ``metrics``…) and is added to every line.
    """
    level_number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(level_number, int):
        raise ValueError(f"unknown log level {level!r}: expected DEBUG, INFO, WARNING or ERROR")

    def add_component(_, __, event: dict) -> dict:
        event.setdefault("component", component)
        return event

    _route_structlog_to_stdlib()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, add_component, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(LIBRARY_LEVEL)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level_number)
    # uvicorn installs its own handlers; let its records reach ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger taking key-value fields: ``log.info("step finished", rows=12, duration_s=0.4)``."""
    return structlog.get_logger(name)


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """Add fields (run_id, step, arrival_minute, shard…) to every log line written inside the block."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield
