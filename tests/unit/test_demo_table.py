"""The README's results table is generated from reports, never typed by hand."""

from __future__ import annotations

import pytest

from auditors.report import AuditResult
from occulta.demo_table import END, START, ReadmeTableError, readme_table, replace_table, results_table
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
    ]


def test_the_table_replaces_only_what_lies_between_the_markers():
    readme = f"# Title\n\nbefore\n{START}\n| old |\n{END}\nafter\n"
    new = replace_table(readme, "| new |\n")
    assert new == f"# Title\n\nbefore\n{START}\n| new |\n{END}\nafter\n"
    assert readme_table(new) == "| new |\n"
    with pytest.raises(ReadmeTableError, match="no generated table"):
        readme_table("# no markers\n")
