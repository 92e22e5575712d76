"""Render a report as a self-contained HTML page (plots embedded) and as a Markdown summary.

Pure text rendering over the pydantic `Report`; no torch. Both lay out `occulta.report_view` (the
order and words the dashboard's report page uses too), the dashboard reuses `flatten_metrics`, and
the Markdown summary is what a pull-request comment shows.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from auditors.report import Finding, Report
from occulta.report_view import (
    CAVEATS_HEADING,
    MODEL_HEADING,
    MODEL_VERDICT,
    NO_CAVEATS,
    VERDICT_ICON,
    format_estimate,
    format_number,
    ordered_audits,
    report_view,
)

__all__ = ["VERDICT_ICON", "flatten_metrics", "format_estimate", "render_html", "render_markdown"]
_MAX_EMBED_BYTES = 8 << 20

_env = Environment(loader=PackageLoader("occulta", "templates"), autoescape=select_autoescape(["html", "j2"]))


def flatten_metrics(metrics: dict[str, Any], prefix: str = "", depth: int = 3) -> list[tuple[str, Any]]:
    """Scalar metrics as (dotted path, value) rows: the same paths a gate policy uses."""
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and depth > 1:
            rows.extend(flatten_metrics(value, path + ".", depth - 1))
        elif isinstance(value, bool | int | float | str) or value is None:
            rows.append((path, value))
    return rows


def _fmt(value: Any) -> str:
    return format_number(value)


def _data_uri(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > _MAX_EMBED_BYTES:
        return None
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _examples(finding: Finding, base_dir: Path | None) -> list[dict[str, Any]]:
    """A confirmed finding's before/after examples with their images embedded (those found)."""
    raw = finding.evidence.get("examples")
    if not isinstance(raw, list) or base_dir is None:
        return []
    out = []
    for ex in raw:
        uri = _data_uri(base_dir / str(ex.get("image", ""))) if isinstance(ex, dict) else None
        if uri:
            out.append({**ex, "uri": uri})
    return out


def render_html(report: Report, base_dir: Path | None = None) -> str:
    """The report page; PNG artifacts found under `base_dir` are embedded as data URIs."""
    audits = []
    for a in ordered_audits(report):
        examples = [_examples(f, base_dir) for f in a.findings]
        shown = {ex["image"] for group in examples for ex in group}
        images = []
        for art in a.artifacts:
            if art.path in shown:  # drawn beside its finding instead
                continue
            if art.media_type.startswith("image/") and base_dir is not None:
                uri = _data_uri(base_dir / art.path)
                if uri:
                    images.append({"name": art.name, "uri": uri, "description": art.description})
        audits.append(
            {
                "a": a,
                "icon": VERDICT_ICON[a.verdict],
                "rows": [(p, _fmt(v)) for p, v in flatten_metrics(a.metrics)],
                "estimate": format_estimate(a.estimate, a.n),
                "images": images,
                "examples": examples,
                "files": [art for art in a.artifacts if not art.media_type.startswith("image/")],
            }
        )
    view = report_view(report)
    return _env.get_template("report.html.j2").render(r=report, view=view, audits=audits, icon=VERDICT_ICON)


def _sample_line(report: Report) -> str:
    """One line of accuracy context: overall, and the weakest class, each with its n."""
    s = report.sample
    if s is None or s.accuracy is None:
        return ""
    line = f"Accuracy on the audited sample: **{100 * s.accuracy:.1f}%** (n = {s.n})"
    scored = [(acc, i) for i, acc in enumerate(s.per_class_accuracy) if acc is not None]
    if len(scored) > 1:
        acc, i = min(scored)
        name = report.model.class_names[i] if i < len(report.model.class_names) else str(i)
        line += f"; weakest class `{name}` {100 * acc:.1f}% (n = {s.n_per_class[i]})"
    return line + "."


def render_markdown(report: Report) -> str:
    """A summary fit for a pull-request comment, in the view's order and words: the model verdict and
    headline, the model audits with what each rests on, the explanation caveats as caveats, findings."""
    m, view = report.model, report_view(report)
    lines = [
        f"## {view.icon} Occulta audit: {MODEL_VERDICT.lower()} **{view.verdict_label.upper()}**",
        "",
        view.headline,
        "",
        f"Model `{m.arch}` ({m.num_classes} classes, {m.parameters:,} parameters) on "
        f"`{report.dataset.ref}` ({report.dataset.n_images} images), seed {report.seed}.",
    ]
    if view.model_audits:
        lines += ["", f"### {MODEL_HEADING}", "", "| audit | verdict | rests on | what it means |"]
        lines.append("|---|---|---|---|")
        for a in view.model_audits:
            cells = (_md_cell(a.rests_on), _md_cell(a.meaning or a.summary))
            role = " (warning: never fails the model)" if a.role == "warning" else ""
            lines.append(f"| `{a.name}`{role} | {a.icon} {a.verdict} | {cells[0]} | {cells[1]} |")
    if view.explanation_audits:
        lines += ["", f"### {CAVEATS_HEADING}", ""]
        lines += [
            f"- {a.icon} `{a.name}` ({a.verdict}): {_md_cell(a.meaning or a.summary)} · rests on {a.rests_on}"
            for a in view.caveats
        ] or [NO_CAVEATS]
    sample = _sample_line(report)
    if sample:
        lines += ["", sample]
    findings = [(a.name, f) for a in ordered_audits(report) for f in a.findings]
    if findings:
        lines += ["", "**Findings**", ""]
        for name, f in findings:
            box = f" box `{[round(v) for v in f.box]}`" if f.box else ""
            cls = f" class `{f.class_name}`" if f.class_name else ""
            lines.append(f"- `{name}` {f.kind}{cls}{box}: {f.summary}")
    lines += [
        "",
        f"<sub>occulta {report.environment.versions.get('occulta', '')} · {report.environment.device}",
    ]
    lines[-1] += f" · {report.wall_seconds:.1f} s · schema {report.schema_version}</sub>"
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
