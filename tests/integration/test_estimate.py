"""`occulta audit` prints its cost before running; `--budget` shrinks the run to fit and says how."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from occulta.cli import app
from tests.fixtures.models import write_planted_card


@pytest.fixture(scope="module")
def card(planted_resnet, tmp_path_factory) -> Path:
    return write_planted_card(planted_resnet, tmp_path_factory.mktemp("model"))


def _audit(card: Path, out: Path, *extra: str) -> tuple[int, str]:
    data = "synthetic:shapes?classes=4&size=32&n=64&artifact=square&seed=3"
    args = ["audit", "--model", str(card), "--data", data, "--out", str(out), *extra]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def test_audit_prints_passes_and_seconds_per_audit_before_the_verdicts(card, tmp_path):
    code, output = _audit(card, tmp_path, "--samples", "24")
    assert code == 0, output
    estimate_at = output.index("cost estimate:")
    assert "missingness_bias" in output[estimate_at:] and " passes " in output
    assert output.index("estimate: ~") < output.index("report:")


def test_budget_scales_the_sample_sizes_down_and_says_what_changed(card, tmp_path):
    code, output = _audit(card, tmp_path, "--audits", "missingness_bias,lime_consistency", "--budget", "0.5")
    assert code == 0, output
    assert "budget: lime_consistency.n_samples: 1000 -> 100" in output
    assert "budget: images: 64 -> 16" in output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"]["n_images"] == 16
    lime = next(a for a in report["audits"] if a["name"] == "lime_consistency")
    assert lime["config"]["n_samples"] == 100


def test_a_budget_that_is_not_positive_is_a_one_line_error(card, tmp_path):
    code, output = _audit(card, tmp_path / "out", "--budget", "0")
    assert code == 2
    assert "--budget" in output and not (tmp_path / "out" / "report.json").exists()
