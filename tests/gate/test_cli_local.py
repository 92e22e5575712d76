"""`occulta gate --local`: exit codes, outputs and summaries without any server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditors.report import AuditResult
from occulta.cli import app
from tests.gate.reports import make_report

PASSING = "version: 1\nassertions:\n  missingness_bias.verdict: [error, {equals: pass}]\n"
FAILING = "version: 1\nassertions:\n  lime_consistency.metrics.removal.own_at_25: [error, {max: 0.5}]\n"

runner = CliRunner()


@pytest.fixture
def report_json(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(make_report().model_dump_json(by_alias=True))
    return path


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_passing_policy_exits_0_and_prints_the_markdown(tmp_path: Path, report_json: Path) -> None:
    result = runner.invoke(
        app, ["gate", "--policy", str(write(tmp_path, PASSING)), "--local", str(report_json)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## Occulta gate ✅ passed")


def test_failing_policy_exits_1_and_writes_junit_markdown_and_step_summary(
    tmp_path: Path, report_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = write(tmp_path, "earlier step\n", "summary.md")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    args = ["gate", "-p", str(write(tmp_path, FAILING)), "--local", str(report_json)]
    result = runner.invoke(app, [*args, "--junit", str(junit), "--markdown", str(markdown)])
    assert result.exit_code == 1, result.output
    assert "| ❌ | `lime_consistency.metrics.removal.own_at_25` |" in result.stdout
    assert markdown.read_text() == result.stdout
    assert summary.read_text() == "earlier step\n" + result.stdout, "the step summary is appended to"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"


def test_missing_metric_exits_1(tmp_path: Path, report_json: Path) -> None:
    policy = write(tmp_path, "assertions:\n  sis.metrics.share_small: [warn, {max: 0.1}]\n")
    result = runner.invoke(app, ["gate", "-p", str(policy), "--local", str(report_json)])
    assert result.exit_code == 1
    assert "missing metric `sis.metrics.share_small`" in result.stdout


@pytest.mark.parametrize(
    "path",
    ["missingness_bias.metrics.worst.entropy_drp_at_half", "missingnes_bias.verdict"],
)
def test_misspelt_metric_or_audit_exits_2_with_the_did_you_mean_on_the_first_line(
    tmp_path: Path, report_json: Path, path: str
) -> None:
    junit = tmp_path / "gate.xml"
    policy = write(
        tmp_path, f"assertions:\n  verdict: [warn, {{equals: pass}}]\n  {path}: [error, {{max: 1}}]\n"
    )
    result = runner.invoke(
        app, ["gate", "-p", str(policy), "--local", str(report_json), "--junit", str(junit)]
    )
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {policy}: line 3: unknown") and "(did you mean " in first
    assert result.stdout == ""
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1", "the JUnit file says why on this exit too"


def test_a_failing_model_still_exits_1_beside_the_typo_rule(tmp_path: Path, report_json: Path) -> None:
    result = runner.invoke(app, ["gate", "-p", str(write(tmp_path, FAILING)), "--local", str(report_json)])
    assert result.exit_code == 1, result.output


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("assertions:\n  a.b: [eror, {max: 1}]\n", "unknown level 'eror'"),
        ("assertions:\n  a.b: [error, {max: one}]\n", "`max` needs a number"),
        ("assertions: [\n", "not valid YAML"),
    ],
)
def test_policy_error_exits_2_with_the_reason(
    tmp_path: Path, report_json: Path, policy: str, message: str
) -> None:
    result = runner.invoke(app, ["gate", "-p", str(write(tmp_path, policy)), "--local", str(report_json)])
    assert result.exit_code == 2
    assert message in result.stderr and "policy.yaml" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["gate", "--local", "REPORT"],  # no --policy
        ["gate", "-p", "POLICY"],  # neither audit id nor --local
        ["gate", "-p", "POLICY", "abc123", "--local", "REPORT"],  # both
        ["gate", "-p", "POLICY", "--local", "REPORT", "--on-error", "ignore"],
        ["gate", "-p", "missing.yaml", "--local", "REPORT"],
    ],
    ids=["no-policy", "no-target", "two-targets", "bad-on-error", "policy-file-missing"],
)
def test_usage_errors_exit_2(tmp_path: Path, report_json: Path, args: list[str]) -> None:
    policy = str(write(tmp_path, PASSING))
    args = [policy if a == "POLICY" else str(report_json) if a == "REPORT" else a for a in args]
    assert runner.invoke(app, args).exit_code == 2


def test_a_file_that_is_not_a_report_exits_2(tmp_path: Path) -> None:
    bogus = write(tmp_path, '{"verdict": "pass"}', "report.json")
    result = runner.invoke(app, ["gate", "-p", str(write(tmp_path, PASSING)), "--local", str(bogus)])
    assert result.exit_code == 2
    assert "is not an Occulta report" in result.stderr


def test_markdown_given_as_the_report_is_one_line_naming_what_to_give(tmp_path: Path) -> None:
    summary = write(tmp_path, "## Occulta gate ✅ passed\n", "summary.md")
    result = runner.invoke(app, ["gate", "--policy", str(write(tmp_path, PASSING)), "--local", str(summary)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {summary} is not JSON, so not an Occulta report; give the report.json an audit wrote "
        "(`occulta audit --out DIR` writes DIR/report.json)"
    ]


def test_json_that_is_not_a_report_names_the_first_problem_without_pydantic_urls(tmp_path: Path) -> None:
    report = make_report().model_dump(mode="json", by_alias=True)
    report["seed"] = "zero"
    path = write(tmp_path, json.dumps(report), "report.json")
    result = runner.invoke(app, ["gate", "--policy", str(write(tmp_path, PASSING)), "--local", str(path)])
    assert result.exit_code == 2
    assert "seed: Input should be a valid integer" in result.stderr
    assert "https://" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_actual_column_rounds_every_number_to_four_significant_digits(tmp_path: Path) -> None:
    audits = [
        AuditResult(
            name="missingness_bias",
            verdict="pass",
            summary="s",
            metrics={"worst": {"entropy_drop_at_half": 0.543419361114502, "auc": 0.744}},
        )
    ]
    path = write(tmp_path, make_report(audits=audits).model_dump_json(by_alias=True), "report.json")
    policy = "assertions:\n  missingness_bias.metrics.worst.entropy_drop_at_half: [error, {max: 1}]\n"
    policy += "  missingness_bias.metrics.worst.auc: [error, {min: 0.5}]\n"
    result = runner.invoke(app, ["gate", "--policy", str(write(tmp_path, policy)), "--local", str(path)])
    assert result.exit_code == 0, result.output
    assert "| 0.5434 |" in result.stdout and "| 0.744 |" in result.stdout
    assert "0.543419361114502" not in result.stdout
