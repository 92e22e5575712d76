"""What the rest of the product knows about an audit without running it: its metadata and its config base.

Pure data (pydantic and dataclasses, no torch, no numpy), so the API, the dashboard and the light CLI
read every audit's `AuditInfo` and validate every `AuditConfig` without importing the computation
(docs/architecture.md, "Metadata").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from auditors.report import Role


class AuditConfig(BaseModel):
    """Base of every audit's config: pure data, so it travels over JSON to a worker."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = None  # None: the run's seed


@dataclass(frozen=True)
class FormField:
    """An integer setting the dashboard's launch form shows: the config field and its label."""

    field: str
    label: str


@dataclass(frozen=True)
class PolicyLine:
    """One assertion of the example gate policy: `metric` is relative to the audit (e.g.
    `metrics.worst.auc`), `rule` the comparator mapping (e.g. {"min": 0.5})."""

    metric: str
    level: str
    rule: dict[str, Any]


@dataclass(frozen=True)
class BudgetKnob:
    """A config field a time budget may shrink (largest-cost audit first), and the floor it stops at."""

    field: str
    floor: int


@dataclass(frozen=True)
class AuditInfo:
    """Everything about an audit that can be known without torch: read by the registry's callers
    (CLI, API, dashboard, demo, example policy, docs). `implementation` is `module:Class`."""

    name: str
    title: str
    checks: str  # one line: what the audit checks
    implementation: str
    # `module:Class` of the audit's pydantic config, torch-free (validating a battery imports only it);
    # "" reads `Config` off the implementation (a plug-in that keeps its config beside its computation).
    config: str = ""
    charts: str = ""  # `module:function(metrics) -> list[Chart]`, torch-free; "" draws no charts
    shardable: bool = False
    # Which images the audit looks at, in words (docs/audits.md's table is checked against it).
    picks: str = "a class-stratified sample"
    form_fields: tuple[FormField, ...] = ()
    policy_comment: str = ""
    policy: tuple[PolicyLine, ...] = ()
    budget: tuple[BudgetKnob, ...] = ()
    # model: the verdict is about the model (a shortcut); warning: about the model but not a shortcut (it
    # never makes the model fail); explanation: about explanations of it (a caveat). See auditors.report.
    role: Role = "model"
    demo_config: dict[str, Any] = field(default_factory=dict)  # sized for `occulta demo` on a CPU
    smoke_config: dict[str, Any] = field(default_factory=dict)  # the smallest run: the contract tests
