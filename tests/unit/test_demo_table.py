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
    return {"cnn-clean": clean, "cnn": planted}


def test_the_table_has_the_model_verdict_then_one_row_per_audit_in_column_order():
    table = results_table(_reports())
    assert table.splitlines() == [
        "| | planted CNN | clean CNN |",
        "|---|---|---|",
        "| **model verdict** | **fail** | **inconclusive** |",
        "| `missingness_bias` (explanation) | fail: share to one class 0.97 [0.94, 0.99], n = 300 | fail, n = 300 |",
        "| `spurious_signal` (model) | fail, n = 128 | not run |",
        "",
        f"Run on: {_reports()['cnn'].environment.cpu or _reports()['cnn'].environment.device}, torch ?.",
    ]


def test_another_cpu_may_change_the_figures_but_not_the_rows_or_the_model_verdicts():
    reports = _reports()
    table = results_table(reports)
    reports["cnn"].environment.cpu = "Other CPU, AVX2"
    est = reports["cnn"].audits[0].estimate
    assert est is not None
    est["value"] = 0.5
    other = results_table(reports)
    assert table_machine(other) == "Run on: Other CPU, AVX2, torch ?." != table_machine(table)
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
