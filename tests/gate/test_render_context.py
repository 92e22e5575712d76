"""The static report and the Markdown summary carry the sample's accuracy (with its n) and a confirmed
shortcut's before/after examples, embedded so the HTML file stands alone."""

from __future__ import annotations

from pathlib import Path

from auditors.report import Artifact, AuditResult, Finding, SampleSummary
from occulta.render import render_html, render_markdown
from tests.gate.reports import make_report

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
EXAMPLES = [
    {"image": "spurious_signal/in_0.png", "role": "in_class", "true": "a", "pred_before": "a",
     "conf_before": 0.99, "pred_after": "a", "conf_after": 0.99},
    {"image": "spurious_signal/stamp_0.png", "role": "stamped", "true": "b", "pred_before": "b",
     "conf_before": 0.91, "pred_after": "a", "conf_after": 0.97},
]  # fmt: skip


def report_with_context(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "spurious_signal").mkdir()
    for ex in EXAMPLES:
        (tmp_path / ex["image"]).write_bytes(PNG)
    finding = Finding(
        kind="spurious_region",
        summary="the corner box decides a",
        class_name="a",
        evidence={"examples": EXAMPLES, "removal": {"effect": 0.998, "random_effect": 0.001, "n": 40}},
    )
    audit = AuditResult(
        name="spurious_signal",
        verdict="fail",
        summary="shortcut",
        findings=[finding],
        artifacts=[Artifact(name=ex["image"], path=ex["image"]) for ex in EXAMPLES],
    )
    report = make_report(audits=[audit])
    report.sample = SampleSummary(
        n=64, n_per_class=[30, 34], accuracy=0.875, per_class_accuracy=[0.9, 0.8529],
        confusion=[[27, 3], [5, 29]], predicted_per_class=[32, 32],
    )  # fmt: skip
    return report


def test_static_report_shows_the_confusion_matrix_and_embedded_before_after_examples(tmp_path: Path) -> None:
    html = render_html(report_with_context(tmp_path), tmp_path)
    assert "<strong>87.5%</strong> correct on <strong>n = 64</strong> images" in html
    assert "Confusion matrix (rows: true class, columns: predicted; counts)" in html
    assert 'class="num diag lvl-4">27<' in html
    assert "Stamped onto other classes: before → after" in html
    assert "b 91% → <strong>a</strong> 97%" in html
    assert html.count("data:image/png;base64,") == 2, "each example once, beside its finding"
    assert "n = 40 images" in html


def test_markdown_summary_gives_accuracy_and_the_weakest_class_with_their_n(tmp_path: Path) -> None:
    md = render_markdown(report_with_context(tmp_path))
    assert "Accuracy on the audited sample: **87.5%** (n = 64); weakest class `b` 85.3% (n = 34)." in md


def test_a_colour_cast_finding_renders_its_removal_estimate(tmp_path: Path) -> None:
    """A global shortcut's evidence holds an estimate (value, interval, n), not a region's effect
    pair; the report must render both kinds (a confirmed cast once crashed the HTML)."""
    finding = Finding(
        kind="global_shortcut",
        summary="a colour cast decides a",
        class_name="a",
        evidence={"removal": {"value": 0.41, "lo": 0.3, "hi": 0.52, "n": 48, "p_value": 0.001}},
    )
    audit = AuditResult(name="spurious_signal", verdict="fail", summary="cast", findings=[finding])
    html = render_html(make_report(audits=[audit]), tmp_path)
    assert "Removing it costs <strong>0.41</strong> [0.3, 0.52] confidence (n = 48 images)" in html
