"""One view of a report for every place a person reads it: the static HTML page, the Markdown
summary and the dashboard's report page. It fixes the order (the model's verdict first, then the
model audits, then the explanation audits as caveats) and the words, so the three never disagree.

Pure data over the pydantic `Report`; no torch, no Jinja: the templates and the Markdown writer only
lay it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditors.report import AuditResult, Report

VERDICT_ICON = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "error": "💥"}
MODEL_VERDICT = "Model verdict"
MODEL_HEADING = "The model"
CAVEATS_HEADING = "Explanation caveats (they do not make the model fail)"
NO_CAVEATS = "Every explanation audit passed: its explanations can be used as they are."
ROLE_LABEL = {
    "model": "about the model",
    "warning": "model warning (never fails it)",
    "explanation": "explanation caveat",
}


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value + 0.0:.4g}"  # + 0.0 turns -0.0 into 0.0: never print "-0"
    return "—" if value is None else str(value)


def format_estimate(estimate: dict[str, Any] | None, n: int | None = None) -> str:
    """What a verdict rests on, in one cell: "0.42 [0.30, 0.55], n = 96" (n alone when no statistic)."""
    if not estimate:
        return "—" if n is None else f"n = {n}"
    value, lo, hi = (estimate.get(k) for k in ("value", "lo", "hi"))
    size = estimate.get("n", n)
    text = format_number(value)
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        text += f" [{format_number(lo)}, {format_number(hi)}]"
    if estimate.get("p_value") is not None:
        text += f", p = {format_number(estimate['p_value'])}"
    return text + ("" if size is None else f", n = {size}")


@dataclass(frozen=True)
class AuditLine:
    """One audit as every view shows it."""

    name: str
    title: str  # the name in words: "missingness bias"
    verdict: str
    role: str
    role_label: str
    summary: str
    meaning: str  # what the verdict means and what to do ("" when the audit says nothing more)
    rests_on: str
    error: str | None

    @property
    def icon(self) -> str:
        return VERDICT_ICON.get(self.verdict, "")


@dataclass(frozen=True)
class ReportView:
    verdict: str
    verdict_label: str  # "pass with caveats" when the model passes but an explanation does not
    explanation_verdict: str
    headline: str
    model_audits: list[AuditLine]
    explanation_audits: list[AuditLine]

    @property
    def audits(self) -> list[AuditLine]:
        """Every audit in reading order: the model's first, then the explanations'."""
        return self.model_audits + self.explanation_audits

    @property
    def caveats(self) -> list[AuditLine]:
        """Explanation audits that did not pass: what not to trust when explaining this model."""
        return [a for a in self.explanation_audits if a.verdict != "pass"]

    @property
    def icon(self) -> str:
        return VERDICT_ICON.get(self.verdict, "")

    @property
    def words(self) -> dict[str, str]:
        """The headings every view prints, so the page and the summary say the same thing."""
        return {
            "model_verdict": MODEL_VERDICT,
            "model_heading": MODEL_HEADING,
            "caveats_heading": CAVEATS_HEADING,
            "no_caveats": NO_CAVEATS,
        }


def _line(a: AuditResult) -> AuditLine:
    return AuditLine(
        name=a.name,
        title=a.name.replace("_", " "),
        verdict=a.verdict,
        role=a.role,
        role_label=ROLE_LABEL.get(a.role, a.role),
        summary=a.summary,
        meaning=a.meaning,
        rests_on=format_estimate(a.estimate, a.n),
        error=a.error,
    )


def report_view(report: Report) -> ReportView:
    """The report in the order and words every view uses."""
    return ReportView(
        verdict=report.verdict,
        verdict_label=report.verdict_label,
        explanation_verdict=report.explanation_verdict,
        headline=report.headline,
        model_audits=[_line(a) for a in report.audits if a.role != "explanation"],
        explanation_audits=[_line(a) for a in report.audits if a.role == "explanation"],
    )


def ordered_audits(report: Report) -> list[AuditResult]:
    """The report's audits in the view's order (model audits first), for per-audit sections."""
    return [a for a in report.audits if a.role != "explanation"] + [
        a for a in report.audits if a.role == "explanation"
    ]
