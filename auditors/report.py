"""The report: one versioned pydantic document that every audit writes into.

It is the contract between the auditors, the CLI, the service, the dashboard and the gate, so it
lives here (pydantic only, no torch) and changes only with a `SCHEMA_VERSION` bump.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = "1.0"

Verdict = Literal["pass", "fail", "inconclusive", "error"]

# A fail outranks an error (the model is known bad), an error outranks inconclusive (nothing was
# verified, so a gate must not read it as a pass).
_VERDICT_RANK: dict[str, int] = {"pass": 0, "inconclusive": 1, "error": 2, "fail": 3}


def combine_verdicts(verdicts: list[Verdict]) -> Verdict:
    """The overall verdict is the worst of its parts; an empty battery proves nothing."""
    if not verdicts:
        return "inconclusive"
    return max(verdicts, key=lambda v: _VERDICT_RANK[v])


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


class Report(BaseModel):
    schema_version: str = SCHEMA_VERSION
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: ModelDescription
    dataset: DatasetDescription
    seed: int
    environment: Environment
    wall_seconds: float = 0.0
    verdict: Verdict = "inconclusive"
    audits: list[AuditResult] = Field(default_factory=list)

    def finalize(self) -> Report:
        """Recompute the overall verdict from the audits (call after adding or replacing one)."""
        self.verdict = combine_verdicts([a.verdict for a in self.audits])
        return self

    def audit(self, name: str) -> AuditResult | None:
        return next((a for a in self.audits if a.name == name), None)
