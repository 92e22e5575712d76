"""`occulta policy init`: write a starting gate policy for the audits a battery actually runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from occulta.cli.app import app, fail
from occulta.errors import PolicyError
from occulta.policy_init import parse_audit_names, render_policy

policy_app = typer.Typer(help="Gate policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("init")
def init(
    audits: Annotated[
        str, typer.Option("--audits", help="Comma-separated audits the battery runs, as for `submit`.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.", show_default=False)
    ] = None,
    skip_not_run: Annotated[
        bool,
        typer.Option(
            "--skip-not-run",
            help="Write `when_not_run: skip`, for one policy shared by batteries of different sizes.",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file.")] = False,
) -> None:
    """Print (or write) a commented policy asserting on exactly these audits' metrics."""
    try:
        names = parse_audit_names(audits)
    except PolicyError as exc:
        fail(str(exc))
    text = render_policy(names, "skip" if skip_not_run else "fail")
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.exists() and not force:
        fail(f"{out} exists; pass --force to overwrite it")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out}: gate with `occulta gate --policy {out} AUDIT_ID`", err=True)
