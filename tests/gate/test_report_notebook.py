"""A notebook shows a report inline, and reports of schema 1.0 (no `sample`) still load."""

from __future__ import annotations

from auditors.report import Finding, Report, SampleSummary
from tests.gate.reports import make_report


def test_repr_html_shows_each_verdict_summary_and_finding_escaped() -> None:
    report = make_report()
    report.audits[1].findings.append(Finding(kind="x", summary="<script>alert(1)</script> patch"))
    html = report._repr_html_()
    assert "FAIL" in html and "PASS" in html
    assert "Explanations are unreliable under black fill." in html
    assert "&lt;script&gt;" in html and "<script>" not in html


def test_repr_html_shows_the_sample_accuracy_when_known() -> None:
    report = make_report()
    report.sample = SampleSummary(
        n=10, n_per_class=[5, 5], accuracy=0.8, per_class_accuracy=[1.0, 0.6], confusion=[[5, 0], [2, 3]]
    )
    assert "accuracy 0.800 on 10 images" in report._repr_html_()


def test_a_schema_1_0_report_without_sample_still_loads() -> None:
    document = make_report().model_dump(mode="json", by_alias=True)
    document.pop("sample")
    document["schema_version"] = "1.0"
    assert Report.model_validate(document).sample is None
