"""The audit base class: what every audit shares, written once (docs/architecture.md, "The audit base").

`Audit.run` is a template method: it resolves the seed, checks for cancellation, times the run, and
records the resolved config; a subclass implements `compute` (and, when `shardable`, `run_shard` and
`merge`). What the rest of the project needs to know about an audit without running it (its title,
form fields, charts, policy lines) is its `AuditInfo`, declared in the audit package's torch-free
`__init__.py` and read through `auditors.registry`.

This module imports neither torch nor numpy, so the API and the light CLI can import it.
"""

from __future__ import annotations

import time
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from auditors.report import AuditResult, Role

if TYPE_CHECKING:
    from auditors.audits.context import AuditContext
    from auditors.cost import Passes, RunShape

Partial = dict[str, Any]


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
class AuditInfo:
    """Everything about an audit that can be known without torch: read by the registry's callers
    (CLI, API, dashboard, demo, example policy, docs). `implementation` is `module:Class`."""

    name: str
    title: str
    checks: str  # one line: what the audit checks
    implementation: str
    charts: str = ""  # `module:function(metrics) -> list[Chart]`, torch-free; "" draws no charts
    shardable: bool = False
    form_fields: tuple[FormField, ...] = ()
    policy_comment: str = ""
    policy: tuple[PolicyLine, ...] = ()
    # model: the verdict is about the model (a shortcut); explanation: about explanations of it (a caveat
    # that never makes the model fail). See auditors.report.
    role: Role = "model"
    demo_config: dict[str, Any] = field(default_factory=dict)  # sized for `occulta demo` on a CPU
    smoke_config: dict[str, Any] = field(default_factory=dict)  # the smallest run: the contract tests


@dataclass(frozen=True)
class ShardMeta:
    """What `merge` needs besides the partials: no model and no images, so a merge is cheap anywhere."""

    class_names: list[str]
    out_dir: Path
    seed: int
    n_images: int

    @classmethod
    def from_context(cls, ctx: AuditContext) -> ShardMeta:
        return cls(list(ctx.class_names), ctx.out_dir, ctx.seed, ctx.n_images)


C = TypeVar("C", bound=AuditConfig)


class Audit(ABC, Generic[C]):
    """One audit. Subclasses set `name` and `Config` and implement `compute`; a `shardable` audit also
    implements `plan_shards`, `run_shard` and `merge`, and its `compute` is the default one: every
    image as one shard, merged, so a sharded and a single run share one code path."""

    name: ClassVar[str]
    Config: ClassVar[type[AuditConfig]]
    shardable: ClassVar[bool] = False
    # What a shard's context holds. "range": only the images of its range, which are independent of
    # the others (missingness bias). "all": the whole sample, because the audit first picks its own
    # images from all of them (a class-stratified subset, the confident images); its ranges are then
    # positions in that pick, and every shard makes the same pick.
    shard_inputs: ClassVar[Literal["range", "all"]] = "range"

    def run(self, ctx: AuditContext, config: C) -> AuditResult:
        """The template method every caller uses: seed, cancellation, timing and the recorded config."""
        t0 = time.perf_counter()
        ctx.check_cancelled()
        seed = ctx.seed_for(config)
        result = self.compute(ctx, config, seed)
        result.name = self.name
        result.config = self.recorded_config(config, seed, result.config)
        result.seconds = round(time.perf_counter() - t0, 3)
        return result

    def compute(self, ctx: AuditContext, config: C, seed: int) -> AuditResult:
        """The audit itself. `result.config` holds only the values the audit resolved (e.g. the patch
        size it chose); `run` adds the rest. The default serves shardable audits."""
        if not self.shardable:
            raise TypeError(f"{type(self).__name__} must implement compute()")
        partials = [self.run_shard(ctx, config, r) for r in self.plan_shards(ctx.n_images, config, 1)]
        return self.merge(ShardMeta.from_context(ctx), config, partials)

    def recorded_config(self, config: C, seed: int, resolved: dict[str, Any]) -> dict[str, Any]:
        """The config written into the report: as given, with the seed and resolved values filled in."""
        return {**config.model_dump(), "seed": seed, **resolved}

    def forward_passes(self, config: C, shape: RunShape) -> Passes | None:
        """What this config costs on a run of `shape`, for the estimate before a run (auditors.cost):
        images through the model by kind, model calls and plots. None: the audit does not say."""
        return None

    @staticmethod
    def patch_size(ctx: AuditContext, config: AuditConfig) -> int:
        """The config's `patch_size`, else the context's default (the ViT's patch, or side/8)."""
        own = getattr(config, "patch_size", None)
        return int(own) if own else ctx.default_patch_size()

    # Sharding (only for `shardable` audits; the worker checks the flag before calling these). A plan
    # is a list of non-empty contiguous ranges that tile 0..n (images, or positions in the audit's own
    # pick when `shard_inputs` is "all"); `merge` of their partials must equal a single run.
    def plan_shards(self, n_images: int, config: C, n_shards: int) -> list[range]:
        raise TypeError(f"{self.name} is not shardable")

    def run_shard(self, ctx: AuditContext, config: C, indices: range) -> Partial:
        raise TypeError(f"{self.name} is not shardable")

    def merge(self, meta: ShardMeta, config: C, partials: Sequence[Partial]) -> AuditResult:
        raise TypeError(f"{self.name} is not shardable")
