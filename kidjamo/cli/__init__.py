"""The ``kidjamo`` command. Each sub-command lives in its own module under ``kidjamo/cli/commands``."""

from __future__ import annotations

import importlib
import pkgutil

import click

from kidjamo.cli import commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.pass_context
def main(context: click.Context) -> None:
    """Kidjamo vitals pipeline: landing -> raw -> bronze -> silver -> gold -> PostgreSQL -> alerts."""
    from kidjamo.logs import configure_logging
    from kidjamo.settings import get_settings

    # JSON lines on stderr, named after the sub-command (ingest, pipeline, metrics, db…); stdout stays for results.
    configure_logging(context.invoked_subcommand or "cli", get_settings().log_level)


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            main.add_command(command)


_register_commands()


if __name__ == "__main__":
    main()
