"""The demo is the README's evidence: one fresh run (about two minutes on 2 CPU cores, once per session)
must print the README's results table, and its verdicts must answer the question a user asks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditors.report import Report
from occulta.demo_table import load_reports, readme_table, table_machine, table_skeleton

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh demo run, or OCCULTA_DEMO_OUT: a run of `occulta demo --device cpu --seed 0` at this
    commit (e.g. the one that just wrote the README), so checking it does not cost a second run."""
    from typer.testing import CliRunner

    from occulta.cli import app

    given = os.environ.get("OCCULTA_DEMO_OUT")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--device", "cpu", "--seed", "0"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def reports(demo_out: Path) -> dict[str, Report]:
    return load_reports(demo_out)


def test_the_readme_results_table_is_what_a_fresh_demo_prints(demo_out: Path) -> None:
    """Regenerate it with `occulta demo --readme README.md` when an audit changes.

    On the CPU kernel family the README names, every figure must match. Elsewhere the demo's tiny
    models train (slightly) differently from the same seed, so only what does not depend on the CPU
    must match: the table's columns and rows and the models' verdicts."""
    readme = readme_table(README.read_text(encoding="utf-8"))
    fresh = (demo_out / "results.md").read_text(encoding="utf-8")
    assert table_machine(readme) is not None, "the README's table does not say where it was run"
    if table_machine(readme) == table_machine(fresh):
        assert readme == fresh
    else:
        assert table_skeleton(readme) == table_skeleton(fresh), (table_machine(readme), table_machine(fresh))


def test_the_planted_models_fail_on_their_shortcut_and_the_clean_control_does_not_fail(
    reports: dict[str, Report],
) -> None:
    assert set(reports) == {"cnn", "vit", "cnn-clean"}
    for key in ("cnn", "vit"):
        findings = reports[key].model_findings
        assert reports[key].verdict == "fail", (key, reports[key].headline)
        assert any(f.kind == "spurious_region" and f.class_name == "circle" for f in findings), (
            key,
            findings,
        )
    clean = reports["cnn-clean"]
    assert clean.verdict != "fail", clean.headline
    for report in reports.values():
        assert report.headline and report.schema_version == "2.1"


@pytest.mark.parametrize("audit", ["missingness_bias", "lime_consistency", "sis"])
def test_every_decided_verdict_carries_its_n_and_interval(reports: dict[str, Report], audit: str) -> None:
    for key, report in reports.items():
        result = report.audit(audit)
        assert result is not None, (key, audit)
        assert result.meaning, (key, audit)
        if result.verdict in ("pass", "fail"):
            est = result.estimate
            assert result.n and est is not None, (key, audit)
            assert est["lo"] <= est["hi"] and est["n"] == result.n, (key, audit, est)
