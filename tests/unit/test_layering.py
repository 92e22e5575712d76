"""docs/architecture.md's promise that the CLI and the gate install and start light: no torch, no server stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "timm", "numpy", "fastapi", "celery", "sqlalchemy", "boto3")


def test_importing_the_cli_and_the_gate_pulls_in_no_heavy_dependency():
    code = (
        "import sys, occulta.cli, occulta.cards, occulta.gate, occulta.client, occulta.runner, auditors.report;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"imported at start-up: {out}"


def test_occulta_version_answers_without_loading_torch():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "occulta", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().startswith("occulta ")
    assert "torch" not in out.stderr
