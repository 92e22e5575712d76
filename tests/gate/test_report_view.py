"""One report view: the static HTML page and the Markdown summary give the model's verdict first, list
the model audits, and show explanation audits only as caveats, in the same words (the dashboard's
report page uses the same partial: tests/service/test_report_views.py)."""

from __future__ import annotations

import re

from auditors.report import AuditResult, Report
from occulta.render import render_html, render_markdown
from occulta.report_view import CAVEATS_HEADING, MODEL_HEADING, MODEL_VERDICT, NO_CAVEATS, report_view
from tests.gate.reports import make_report

CAVEAT = "explanations of this model that remove pixels with black are unreliable; use layer_mask"


def spurious_fail_with_a_caveat() -> Report:
    return make_report(
        audits=[
            AuditResult(
                name="missingness_bias", verdict="fail", role="explanation", summary="mb", meaning=CAVEAT
            ),
            AuditResult(name="spurious_signal", verdict="fail", role="model", summary="a shortcut", n=40),
            AuditResult(name="lime_consistency", verdict="pass", role="explanation", summary="lime ok"),
        ]
    )


def test_the_view_puts_the_model_first_and_explanations_aside() -> None:
    view = report_view(spurious_fail_with_a_caveat())
    assert [a.name for a in view.audits] == ["spurious_signal", "missingness_bias", "lime_consistency"]
    assert [a.name for a in view.model_audits] == ["spurious_signal"]
    assert [a.name for a in view.caveats] == ["missingness_bias"], "a passing explanation is no caveat"
    assert view.verdict == "fail"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_static_html_says_the_model_verdict_first_and_the_caveat_only_as_a_caveat() -> None:
    html = render_html(spurious_fail_with_a_caveat())
    text = _text(html)
    assert text.index(MODEL_VERDICT) < text.index(MODEL_HEADING) < text.index(CAVEATS_HEADING)
    table = html[
        html.index('data-view="model-audits"') : html.index(
            "</table>", html.index('data-view="model-audits"')
        )
    ]
    assert "spurious_signal" in table and "missingness_bias" not in table, "a caveat is not a model verdict"
    caveats = html[html.index('data-view="caveats"') :]
    assert CAVEAT in caveats[: caveats.index("</ul>")]


def test_markdown_says_the_same_in_the_same_order_and_words() -> None:
    md = render_markdown(spurious_fail_with_a_caveat())
    assert md.startswith("## ❌ Occulta audit: model verdict **FAIL**")
    model = md.index(f"### {MODEL_HEADING}")
    caveats = md.index(f"### {CAVEATS_HEADING}")
    assert model < caveats
    assert "missingness_bias" not in md[model:caveats], "the caveat is not in the model's table"
    assert f"- ❌ `missingness_bias` (fail): {CAVEAT}" in md[caveats:]


def test_no_caveats_is_said_in_words_when_every_explanation_passed() -> None:
    report = make_report(
        audits=[
            AuditResult(name="sis", verdict="pass", role="model", summary="fine"),
            AuditResult(name="lime_consistency", verdict="pass", role="explanation", summary="lime ok"),
        ]
    )
    assert NO_CAVEATS in render_markdown(report) and NO_CAVEATS in render_html(report)
