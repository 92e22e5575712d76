"""The runtime contract the images and the chart are built against, shared by the deploy checks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
CHART = REPO / "helm" / "occulta"

# `occulta` subcommands a container may start (the service's runtime contract).
CONTRACT_COMMANDS = frozenset({"api", "worker", "beat", "migrate", "serve"})
# The embedded all-in-one mode is for laptops; no container or pod may run it.
CONTAINER_COMMANDS = CONTRACT_COMMANDS - {"serve"}


def registered_cli_commands() -> set[str] | None:
    """Names registered on the Typer app, or None while the service commands are not merged yet."""
    try:
        import typer.main

        from occulta.cli import app
    except ImportError:
        return None
    group = typer.main.get_command(app)
    names = set(getattr(group, "commands", {}))
    return names if names & CONTRACT_COMMANDS else None


def tool(name: str) -> str:
    """A console script from the dev extra: next to this interpreter first, then on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"`{name}` is missing: install the dev extra (pip install -e '.[dev]')"
    return found
