"""`occulta policy init`: a policy for exactly the audits a battery runs, which gates them cleanly."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditors.registry import builtin_infos
from occulta.cli import app
from occulta.gate import evaluate, load_policy
from occulta.policy_init import render_policy
from tests.gate.reports import healthy_report

runner = CliRunner()
BUILTIN = [info.name for info in builtin_infos()]
SUBSETS = [list(c) for n in range(1, len(BUILTIN) + 1) for c in itertools.combinations(BUILTIN, n)]


def test_every_builtin_audit_declares_policy_lines() -> None:
    assert all(info.policy for info in builtin_infos())


@pytest.mark.parametrize("audits", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_init_policy_passes_the_gate_on_a_report_of_exactly_those_audits(audits: list[str]) -> None:
    result = evaluate(healthy_report(audits), load_policy(render_policy(audits)))
    assert result.passed, [a.message for a in result.assertions if not a.passed]
    assert all(a.outcome == "passed" for a in result.assertions)
    asserted = {a.path.split(".")[0] for a in result.assertions} - {"verdict"}
    assert asserted == set(audits), "the policy asserts on the audits asked for and no others"


def test_init_policy_still_fails_a_model_that_breaks_a_bound() -> None:
    report = healthy_report(["spurious_signal"])
    report.audits[0].metrics["n_confirmed"] = 1
    result = evaluate(report, load_policy(render_policy(["spurious_signal"])))
    assert not result.passed
    assert [a.path for a in result.assertions if a.outcome == "failed"] == [
        "spurious_signal.metrics.n_confirmed"
    ]


def test_skip_not_run_policy_serves_a_smaller_battery() -> None:
    policy = load_policy(render_policy(list(BUILTIN), "skip"))
    result = evaluate(healthy_report(["missingness_bias"]), policy)
    assert result.passed and result.counts.skipped > 0 and result.counts.errors == 0


def test_readme_battery_with_the_full_policy_names_each_audit_not_run() -> None:
    result = evaluate(
        healthy_report(["missingness_bias", "spurious_signal"]), load_policy(render_policy(list(BUILTIN)))
    )
    missing = [a for a in result.assertions if a.outcome == "missing"]
    assert missing and all("was not run" in a.message for a in missing)


def test_cli_writes_a_commented_policy_the_local_gate_accepts(tmp_path: Path) -> None:
    out = tmp_path / "policy.yaml"
    result = runner.invoke(
        app, ["policy", "init", "--audits", "missingness_bias,spurious_signal", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# Occulta gate policy for: missingness_bias, spurious_signal")
    assert "lime_consistency" not in text and "sis." not in text
    report = tmp_path / "report.json"
    report.write_text(healthy_report(["missingness_bias", "spurious_signal"]).model_dump_json(by_alias=True))
    gated = runner.invoke(app, ["gate", "--policy", str(out), "--local", str(report)])
    assert gated.exit_code == 0, gated.output


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "policy.yaml"
    out.write_text("mine")
    result = runner.invoke(app, ["policy", "init", "--audits", "sis", "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.stderr and out.read_text() == "mine"
    assert runner.invoke(app, ["policy", "init", "--audits", "sis", "-o", str(out), "--force"]).exit_code == 0


def test_cli_unknown_audit_is_one_line_with_a_hint() -> None:
    result = runner.invoke(app, ["policy", "init", "--audits", "missingness_bais"])
    assert result.exit_code == 2
    assert "did you mean missingness_bias?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
