"""The `occulta` command. Each group of commands lives in its own module and registers on `app`."""

from __future__ import annotations

import sys

import typer

# Command modules register themselves on import (one line each).
from occulta.cli import admin as _admin  # noqa: F401
from occulta.cli import audit as _audit  # noqa: F401
from occulta.cli import ci as _ci  # noqa: F401
from occulta.cli import policy as _policy  # noqa: F401
from occulta.cli import service as _service  # noqa: F401
from occulta.cli import submit as _submit  # noqa: F401
from occulta.cli.app import app, fail

__all__ = ["app", "fail", "main"]


def main() -> None:
    """Console entry point: domain errors become one clear line and exit code 2, never a traceback."""
    from occulta.errors import OccultaError

    try:
        app()
    except OccultaError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
