"""The Typer application object and small helpers shared by every command module."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from occulta import __version__

app = typer.Typer(
    name="occulta",
    help="Audit image classifiers for missingness bias, unreliable explanations, overinterpretation "
    "and spurious signals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"occulta {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Occulta."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one `error:` line and exit; used for usage errors the user must fix."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
