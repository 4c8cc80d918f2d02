"""Sub-commands of ``kidjamo``: every module here that defines ``command`` (a click command) is one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click


@contextmanager
def user_errors(*errors: type[Exception]) -> Iterator[None]:
    """Report ``errors`` (the ones a user can act on) as a one-line CLI error with exit status 1, not a traceback."""
    try:
        yield
    except errors as error:
        raise click.ClickException(str(error)) from None
