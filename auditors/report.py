"""The report: one versioned pydantic document that every audit writes into.

It is the contract between the auditors, the CLI, the service, the dashboard and the gate, so it
lives here (pydantic only, no torch) and changes only with a `SCHEMA_VERSION` bump.

Schema 2.0 (breaking): `Report.verdict` is about the *model* only, the worst verdict of the audits whose
`role` is "model" (a shortcut). Audits of the *explanations* (missingness bias, LIME reliability) no
longer make it FAIL: they become `caveats`, with their own `explanation_verdict`. Every audit result
carries `role`, `n` (the images its verdict rests on), `estimate` (the statistic with its interval) and
`meaning` (what the verdict means and what to do).

Schema 2.1 (additive): role "warning", a property of the model that is not a shortcut (overinterpretation:
Carter et al. find it in nearly every CIFAR-10 model, and on the demo's task the clean model's share is
higher than the planted one's), so it is reported as `warnings` beside the verdict and never fails it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = "2.1"  # 2.0: the verdict is about the model (roles, caveats); 2.1: role "warning"

Verdict = Literal["pass", "fail", "inconclusive", "error"]
# What a verdict is about: the model itself (a shortcut), a property of the model that is not a shortcut
# (overinterpretation: a warning), or the explanations of it (removal-based explanations inherit
# missingness bias; LIME can be unreliable): only the first can make a model fail.
Role = Literal["model", "warning", "explanation"]

# A fail outranks an error (the model is known bad), an error outranks inconclusive (nothing was
# verified, so a gate must not read it as a pass).
_VERDICT_RANK: dict[str, int] = {"pass": 0, "inconclusive": 1, "error": 2, "fail": 3}


def combine_verdicts(verdicts: list[Verdict]) -> Verdict:
    """The overall verdict is the worst of its parts; an empty battery proves nothing."""
    if not verdicts:
        return "inconclusive"
    return max(verdicts, key=lambda v: _VERDICT_RANK[v])


def write_headline(
    verdict: Verdict, model_audits: list[AuditResult], caveats: list[Caveat], warnings: Sequence[Caveat] = ()
) -> str:
    """The answer to the user's question, model first, then its warnings, then what not to trust in its
    explanations."""
    failing = [a for a in model_audits if a.verdict == "fail"]
    if not model_audits:
        lead = "No audit that can fail the model ran, so nothing is known about its shortcuts"
    elif failing:
        lead = "The model has a problem: " + "; ".join(a.summary.rstrip(".") for a in failing)
    elif verdict == "pass":
        names = ", ".join(a.name for a in model_audits)
        lead = f"No model problem found ({names})"
    else:
        unsure = [a.name for a in model_audits if a.verdict in ("inconclusive", "error")]
        lead = f"Not decided: {', '.join(unsure)} could not reach a verdict"
    if warnings:
        lead += ". Model warnings (not shortcuts): " + " ".join(w.text.rstrip(".") + "." for w in warnings)
        lead = lead.rstrip(".")
    if caveats:
        lead += ". Explanation caveats: " + " ".join(c.text.rstrip(".") + "." for c in caveats)
        return lead
    return lead + "."


class Finding(BaseModel):
    """One thing a person should look at, e.g. a confirmed shortcut region or an attractor class."""

    model_config = ConfigDict(populate_by_name=True)

    kind: str = Field(examples=["spurious_region", "attractor_class"])
    summary: str
    class_name: str | None = Field(default=None, alias="class")
    box: list[float] | None = Field(default=None, description="[x, y, w, h] in model-input pixels")
    evidence: dict[str, Any] = Field(default_factory=dict)

    @field_validator("box")
    @classmethod
    def _box_has_four_numbers(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and len(v) != 4:
            raise ValueError("box must be [x, y, w, h]")
        return v


class Artifact(BaseModel):
    """A file an audit wrote; `path` is relative to the report's directory (or object prefix)."""

    name: str
    path: str
    media_type: str = "image/png"
    description: str = ""


class AuditResult(BaseModel):
    name: str
    verdict: Verdict
    summary: str = Field(description="One sentence a person can act on.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    role: Role = Field(
        default="model",
        description="model: can fail the model; warning: about the model, never fails it; explanation: a caveat",
    )
    n: int | None = Field(default=None, description="images (units) the verdict rests on")
    estimate: dict[str, Any] | None = Field(
        default=None, description="the statistic behind the verdict: value, lo, hi, n, level, p_value"
    )
    meaning: str = Field(default="", description="what the verdict means and what to do about it")


class Caveat(BaseModel):
    """An explanation audit that did not pass (what not to trust when explaining this model), or a
    warning audit that failed (a property of the model that is not a shortcut)."""

    audit: str
    verdict: Verdict
    text: str


class ModelFinding(BaseModel):
    """A finding of a model audit, lifted to the report's headline (the audit keeps the evidence)."""

    model_config = ConfigDict(populate_by_name=True)

    audit: str
    kind: str
    summary: str
    class_name: str | None = Field(default=None, alias="class")
    box: list[float] | None = None


class ModelDescription(BaseModel):
    arch: str
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    family: str = Field(
        default="other",
        description="vit | swin | resnet | convnext | efficientnet | mobilenet | regnet | other "
        "(auditors.engine.model_family): decides native missingness",
    )
    num_classes: int
    class_names: list[str]
    input_size: list[int] = Field(description="[C, H, W]")
    mean: list[float]
    std: list[float]
    parameters: int = 0
    weights_sha256: str | None = None
    card: str | None = None


class DatasetDescription(BaseModel):
    ref: str
    n_images: int
    n_classes: int
    class_names: list[str]
    image_size: list[int] = Field(description="[H, W] after preprocessing")
    labelled: bool
    sample_seed: int
    regions: list[dict[str, Any]] = Field(default_factory=list)


class Environment(BaseModel):
    device: str
    versions: dict[str, str] = Field(default_factory=dict)
    dtype: str = "float32"
    # The CPU and the kernel family torch dispatched to (e.g. "AMD EPYC, AVX512"): the same seed on
    # another family rounds differently, so a model trained there ends up (slightly) different.
    cpu: str | None = None
    # Out-of-memory events of the run: a batch halved, or an audit re-run on the CPU. The results are
    # those of an unconstrained run (they do not depend on the batching), only slower.
    memory: list[str] = Field(default_factory=list)


class SampleSummary(BaseModel):
    """How the model does on the audited sample, from one clean forward pass: the context an engineer
    reads the audits against (a shortcut matters more on a class the model otherwise gets right)."""

    n: int = Field(description="images in the audited sample")
    n_per_class: list[int] = Field(description="true-label count per class (zeros when unlabelled)")
    accuracy: float | None = Field(default=None, description="None when the data are unlabelled")
    per_class_accuracy: list[float | None] = Field(
        default_factory=list, description="per true class; None for a class absent from the sample"
    )
    confusion: list[list[int]] | None = Field(
        default=None, description="rows: true class, columns: predicted class; None when unlabelled"
    )
    predicted_per_class: list[int] = Field(default_factory=list, description="predictions per class")


class Report(BaseModel):
    schema_version: str = SCHEMA_VERSION
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: ModelDescription
    dataset: DatasetDescription
    seed: int
    environment: Environment
    wall_seconds: float = 0.0
    verdict: Verdict = Field(
        default="inconclusive", description="about the model: the worst verdict of its model audits"
    )
    explanation_verdict: Verdict = Field(
        default="inconclusive", description="the worst verdict of the explanation audits"
    )
    headline: str = Field(default="", description="one sentence answering: can I trust this model?")
    model_findings: list[ModelFinding] = Field(default_factory=list)
    caveats: list[Caveat] = Field(default_factory=list)
    warnings: list[Caveat] = Field(
        default_factory=list, description="failed audits of role warning: about the model, not failing it"
    )
    audits: list[AuditResult] = Field(default_factory=list)
    sample: SampleSummary | None = None

    def finalize(self) -> Report:
        """Recompute the verdicts, findings, caveats and headline from the audits (call after adding or
        replacing one)."""
        model = [a for a in self.audits if a.role == "model"]
        explanation = [a for a in self.audits if a.role == "explanation"]
        self.warnings = [
            Caveat(audit=a.name, verdict=a.verdict, text=a.meaning or a.summary)
            for a in self.audits
            if a.role == "warning" and a.verdict == "fail"
        ]
        self.verdict = combine_verdicts([a.verdict for a in model])
        self.explanation_verdict = combine_verdicts([a.verdict for a in explanation])
        self.model_findings = [
            ModelFinding(audit=a.name, kind=f.kind, summary=f.summary, class_name=f.class_name, box=f.box)
            for a in model
            if a.verdict == "fail"
            for f in a.findings
        ]
        self.caveats = [
            Caveat(audit=a.name, verdict=a.verdict, text=a.meaning or a.summary)
            for a in explanation
            if a.verdict != "pass"
        ]
        self.headline = write_headline(self.verdict, model, self.caveats, self.warnings)
        return self

    @property
    def verdict_label(self) -> str:
        """The verdict as a person reads it: "pass with warnings" when a warning audit failed, "pass with
        caveats" when some of its explanations are not to be trusted (both, joined by "and")."""
        if self.verdict != "pass":
            return self.verdict
        extra = [w for w, on in (("warnings", self.warnings), ("caveats", self.caveats)) if on]
        return f"pass with {' and '.join(extra)}" if extra else "pass"

    def audit(self, name: str) -> AuditResult | None:
        return next((a for a in self.audits if a.name == name), None)

    def _repr_html_(self) -> str:
        """A notebook shows the verdicts inline: one row per audit with its summary and findings."""
        e = html.escape
        rows = "".join(
            f"<tr><td><code>{e(a.name)}</code></td><td>{_badge(a.verdict)}</td><td>{e(a.summary)}"
            + "".join(f"<br><small>• {e(f.summary)}</small>" for f in a.findings)
            + "</td></tr>"
            for a in self.audits
        )
        accuracy = ""
        if self.sample is not None and self.sample.accuracy is not None:
            accuracy = f" · accuracy {self.sample.accuracy:.3f} on {self.sample.n} images"
        return (
            f"<div><p><b>Occulta audit</b> {_badge(self.verdict)} <code>{e(self.model.arch)}</code> on "
            f"<code>{e(self.dataset.ref)}</code> ({self.dataset.n_images} images, seed {self.seed})"
            f"{accuracy}</p><table><thead><tr><th>audit</th><th>verdict</th><th>summary</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


_BADGE_COLOURS = {"pass": "#15803d", "fail": "#b91c1c", "error": "#b91c1c", "inconclusive": "#92400e"}


def _badge(verdict: str) -> str:
    colour = _BADGE_COLOURS.get(verdict, "#6b7280")
    return f'<b style="color:{colour}">{html.escape(verdict.upper())}</b>'
