"""The README's results table is generated from reports, never typed by hand."""

from __future__ import annotations

import pytest

from auditors.report import AuditResult
from occulta.demo_table import (
    END,
    START,
    ReadmeTableError,
    readme_table,
    replace_table,
    results_table,
    table_machine,
    table_skeleton,
)
from tests.gate.reports import make_report


def _reports() -> dict:
    est = {"value": 0.9712, "lo": 0.9433, "hi": 0.9861, "n": 300, "statistic": "share to one class"}
    planted = make_report(
        audits=[
            AuditResult(
                name="missingness_bias", verdict="fail", role="explanation", summary="s", estimate=est
            ),
            AuditResult(name="spurious_signal", verdict="fail", role="model", summary="s", n=128),
        ]
    )
    clean = make_report(
        audits=[AuditResult(name="missingness_bias", verdict="fail", role="explanation", summary="s", n=300)]
    )
    for report in (planted, clean):
        report.environment.cpu = "AMD EPYC, AVX512"
        report.environment.versions = {
            "torch": "2.5.1",
            "timm": "1.0.9",
            "numpy": "2.1.0",
            "python": "3.11.9",
        }
    return {"cnn-clean": clean, "cnn": planted}


MACHINE = "Run on: AMD EPYC, AVX512, 2 threads, torch 2.5.1, timm 1.0.9, numpy 2.1.0, python 3.11.9."


def test_the_table_has_the_model_verdict_then_one_row_per_audit_in_column_order():
    table = results_table(_reports())
    assert table.splitlines() == [
        "| | planted CNN | clean CNN |",
        "|---|---|---|",
        "| **model verdict** | **fail** | **inconclusive** |",
        "| `missingness_bias` (explanation) | fail: share to one class 0.97 [0.94, 0.99], n = 300 | fail, n = 300 |",
        "| `spurious_signal` (model) | fail, n = 128 | not run |",
        "",
        MACHINE,
    ]


def test_another_cpu_may_change_the_figures_but_not_the_rows_or_the_model_verdicts():
    reports = _reports()
    table = results_table(reports)
    reports["cnn"].environment.cpu = "Other CPU, AVX2"
    est = reports["cnn"].audits[0].estimate
    assert est is not None
    est["value"] = 0.5
    other = results_table(reports)
    assert (
        table_machine(other) == MACHINE.replace("AMD EPYC, AVX512", "Other CPU, AVX2") != table_machine(table)
    )
    assert other != table and table_skeleton(other) == table_skeleton(table)
    reports["cnn"].verdict = "pass"  # a model verdict that changes is a change the README must show
    assert table_skeleton(results_table(reports)) != table_skeleton(table)


def test_the_table_replaces_only_what_lies_between_the_markers():
    readme = f"# Title\n\nbefore\n{START}\n| old |\n{END}\nafter\n"
    new = replace_table(readme, "| new |\n")
    assert new == f"# Title\n\nbefore\n{START}\n| new |\n{END}\nafter\n"
    assert readme_table(new) == "| new |\n"
    with pytest.raises(ReadmeTableError, match="no generated table"):
        readme_table("# no markers\n")


def test_the_machine_line_names_kernel_family_threads_and_library_versions():
    line = table_machine(results_table(_reports()))
    assert line == MACHINE
    reports = _reports()
    reports["cnn"].environment.versions["torch"] = "2.6.0"
    assert table_machine(results_table(reports)) != MACHINE, "another torch is another machine line"


def test_the_table_is_rewritten_from_a_finished_run_in_one_command(tmp_path):
    from occulta.demo_table import main

    for key, report in _reports().items():
        (tmp_path / "out" / key).mkdir(parents=True)
        (tmp_path / "out" / key / "report.json").write_text(report.model_dump_json(by_alias=True))
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n{START}\n| old |\n{END}\n")
    assert main([str(tmp_path / "out"), str(readme)]) == 0
    assert readme_table(readme.read_text()) == results_table(_reports())
    assert main([str(tmp_path / "nothing"), str(readme)]) == 2
