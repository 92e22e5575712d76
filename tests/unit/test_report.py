"""The report's headline answers "can I trust this model?": model findings decide the verdict, and
explanation audits (missingness bias, LIME reliability) only add caveats."""

from __future__ import annotations

from auditors.report import SCHEMA_VERSION, AuditResult, Finding
from occulta.render import format_estimate, render_markdown
from tests.gate.reports import make_report


def _audit(name: str, verdict: str, role: str, **kw: object) -> AuditResult:
    return AuditResult(name=name, verdict=verdict, role=role, summary=f"{name} said {verdict}.", **kw)  # type: ignore[arg-type]


def test_an_explanation_audit_that_fails_is_a_caveat_not_a_model_failure():
    report = make_report(
        audits=[
            _audit(
                "missingness_bias",
                "fail",
                "explanation",
                meaning="explanations of this model that remove pixels with black are unreliable; use layer_mask",
            ),
            _audit("spurious_signal", "pass", "model"),
        ]
    )
    assert report.verdict == "pass" and report.explanation_verdict == "fail"
    assert report.verdict_label == "pass with caveats"
    assert [c.audit for c in report.caveats] == ["missingness_bias"]
    assert "use layer_mask" in report.caveats[0].text and "use layer_mask" in report.headline
    assert report.headline.startswith("No model problem found")
    assert report.schema_version == SCHEMA_VERSION == "2.1"


def test_a_model_finding_fails_the_model_and_is_lifted_to_the_report():
    finding = Finding(
        kind="spurious_region", summary="the corner box decides", class_name="circle", box=[25, 25, 6, 6]
    )
    report = make_report(
        audits=[
            _audit("spurious_signal", "fail", "model", findings=[finding]),
            _audit("lime_consistency", "pass", "explanation"),
        ]
    )
    assert report.verdict == "fail" and report.verdict_label == "fail"
    assert [(f.audit, f.kind, f.class_name, f.box) for f in report.model_findings] == [
        ("spurious_signal", "spurious_region", "circle", [25, 25, 6, 6])
    ]
    dumped = report.model_dump(by_alias=True)
    assert dumped["model_findings"][0]["class"] == "circle"
    assert report.headline.startswith("The model has a problem: spurious_signal said fail")


def test_a_failed_warning_audit_is_reported_beside_a_passing_model_verdict():
    """Overinterpretation is about the model but is not a shortcut: it warns and never fails the model."""
    report = make_report(
        audits=[
            _audit("spurious_signal", "pass", "model"),
            _audit("sis", "fail", "warning", meaning="confident from <= 5% of the pixels"),
            _audit("missingness_bias", "fail", "explanation", meaning="use layer_mask"),
        ]
    )
    assert report.verdict == "pass"
    assert report.verdict_label == "pass with warnings and caveats"
    assert [w.audit for w in report.warnings] == ["sis"]
    assert "Model warnings (not shortcuts): confident from <= 5% of the pixels" in report.headline
    markdown = render_markdown(report)
    assert "`sis` (warning: never fails the model)" in markdown
    # a warning that passes adds nothing; a shortcut still fails whatever the warnings say
    quiet = make_report(audits=[_audit("spurious_signal", "pass", "model"), _audit("sis", "pass", "warning")])
    assert quiet.verdict_label == "pass" and quiet.warnings == []
    failing = make_report(
        audits=[_audit("spurious_signal", "fail", "model"), _audit("sis", "fail", "warning")]
    )
    assert failing.verdict == "fail" and failing.verdict_label == "fail"


def test_without_a_model_audit_nothing_is_known_about_the_model():
    report = make_report(audits=[_audit("missingness_bias", "error", "explanation")])
    assert report.verdict == "inconclusive" and report.explanation_verdict == "error"
    assert "No audit that can fail the model ran" in report.headline


def test_an_undecided_model_audit_keeps_the_model_verdict_inconclusive():
    report = make_report(
        audits=[_audit("sis", "inconclusive", "model"), _audit("spurious_signal", "pass", "model")]
    )
    assert report.verdict == "inconclusive" and report.headline.startswith("Not decided: sis")


def test_reports_without_roles_read_as_before():
    """A schema 1.0 report has no `role`: every audit is read as a model audit, so nothing passes that
    failed before."""
    report = make_report()
    assert [a.role for a in report.audits] == ["model", "model"] and report.verdict == "fail"


def test_every_verdict_shows_what_it_rests_on_in_the_summary():
    est = {"value": -0.0, "lo": -0.01, "hi": 0.125, "n": 96, "level": 0.95, "p_value": 0.002}
    assert format_estimate(est) == "0 [-0.01, 0.125], p = 0.002, n = 96"
    assert format_estimate(None, 12) == "n = 12" and format_estimate(None) == "—"
    report = make_report(
        audits=[
            _audit("sis", "pass", "model", n=96, estimate=est, meaning="the model does not overinterpret")
        ]
    )
    md = render_markdown(report)
    assert (
        "| `sis` | ✅ pass | 0 [-0.01, 0.125], p = 0.002, n = 96 | the model does not overinterpret |" in md
    )
    assert "-0 " not in md
