"""`occulta audit` reports a mistake in its inputs before importing torch (in well under the seconds a
model load takes), with a did-you-mean hint where a name is close; config keys get hints too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from occulta.errors import AuditConfigError
from occulta.runner import validate_battery

CARD = {"arch": "occulta_resnet_tiny", "weights": "m.safetensors", "input_size": [3, 32, 32],
        "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": ["a", "b"]}  # fmt: skip


def run_audit(tmp_path: Path, *args: str, card: dict | None = None) -> tuple[int, str, bool]:  # type: ignore[type-arg]
    """Exit code, stderr, and whether torch got imported, for `occulta audit` in a fresh process."""
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card or CARD))
    (tmp_path / "m.safetensors").write_bytes(b"x")
    argv = ["audit", "--model", str(path), "--out", str(tmp_path / "out"), *args]
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom occulta.cli import app\n"
        f"r = CliRunner().invoke(app, {argv!r})\n"
        "print(r.exit_code); print('torch' in sys.modules); print(r.stderr.strip())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    exit_code, torch_loaded, stderr = out.split("\n", 2)
    return int(exit_code), stderr, torch_loaded == "True"


@pytest.mark.parametrize(
    ("args", "card", "message"),
    [
        (
            ["--data", "synthetic:shapes", "--audits", "missingness_bais"],
            None,
            "did you mean missingness_bias?",
        ),
        (
            ["--data", "synthetic:shapes"],
            {**CARD, "arch": "occulta_resnet_tinyy"},
            "did you mean occulta_resnet_tiny?",
        ),
        (["--data", "synthetic:shapes"], {**CARD, "mena": [0.5] * 3}, "unknown key `mena`"),
        (["--data", "no/such/folder"], None, "does not exist"),
        (["--data", "synthetic:shapes", "--device", "gpu"], None, "use auto, cpu, cuda"),
    ],
)
def test_audit_input_mistakes_exit_2_before_torch_is_imported(
    tmp_path: Path,
    args: list[str],
    card: dict | None,  # type: ignore[type-arg]
    message: str,  # type: ignore[type-arg]
) -> None:
    exit_code, stderr, torch_loaded = run_audit(tmp_path, *args, card=card)
    assert exit_code == 2 and message in stderr, stderr
    assert not torch_loaded


def test_misspelt_config_key_names_the_key_it_is_closest_to() -> None:
    with pytest.raises(AuditConfigError) as info:
        validate_battery(["missingness_bias"], {"missingness_bias": {"stratgies": ["black"]}})
    assert "unknown key `stratgies` (did you mean strategies?)" in str(info.value)
