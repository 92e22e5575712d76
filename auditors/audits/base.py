"""The audit base class: the flow every audit shares, written once (docs/architecture.md, "The audit base").

As Quantus' `Metric.__call__` owns checks, batching and aggregation while a metric writes only its
per-instance step, `Audit` owns the flow and an audit writes hooks:

- `pick` (which images; a seeded class-stratified sample by default),
- `shard` (the work of a range of positions, returned as the audit's typed `ShardPartial`),
- `judge` (the verdict and numbers from every shard's partial, as a typed `Judgement`),
- `draw` (the files for people and programs, written from the partials and the judgement).

The base owns the plan, the range, pick and seed checks, the "shards agree" check, the JSON round trip
of the partials, the merge, and the stamping of name, role, recorded config, seed and seconds. Its
flow methods (`run`, `plan_shards`, `run_shard`, `merge`) are final: a single run is the one-shard plan
merged, and a worker's sharded run calls the same three methods, so both give the same result apart
from timings.

This module imports neither torch nor numpy (an audit's hooks do), so the worker can plan without them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from auditors.audits.info import AuditConfig, AuditInfo
from auditors.audits.ranges import check_tiling, even_ranges
from auditors.report import Artifact, AuditResult, Finding, Verdict

if TYPE_CHECKING:
    from auditors.audits.context import AuditContext
    from auditors.passes import Passes, RunShape

# What the base writes around an audit's own partial; `timing` is the worker's (bench/scaling.py).
ENVELOPE = ("audit", "start", "stop", "seed", "seconds", "timing")
FLOW = ("run", "plan_shards", "run_shard", "merge")
LegacyPartial = dict[str, Any]  # the untyped partial of an audit not yet on the hooks


class ShardPartial(BaseModel):
    """Base of an audit's typed partial: what one shard sends to the merge, as JSON (it is stored in
    the database and merged where no model or image is loaded). `agreed` names the fields every shard
    computes identically from the whole context; the merge refuses shards that disagree on them."""

    model_config = ConfigDict(extra="forbid")
    agreed: ClassVar[tuple[str, ...]] = ()


class NoPartial(ShardPartial):
    """The partial of an audit whose whole work is its judgement."""


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


@dataclass(frozen=True)
class Work:
    """One shard's assignment: the resolved seed, its positions, and the audit's pick (image indices
    of the context, one per position; for `shard_inputs == "range"` the context's own images)."""

    seed: int
    positions: range
    picked: Sequence[int]


P = TypeVar("P", bound=ShardPartial)


@dataclass(frozen=True)
class Shards(Generic[P]):
    """Every shard's typed partial in position order, with its range: what `judge` and `draw` read."""

    seed: int
    ranges: list[range]
    parts: list[P]


@dataclass
class Judgement:
    """What an audit concludes: the verdict and what it rests on. `resolved` holds the config values
    the audit chose (a patch size, a strategy), recorded beside the config as given. An audit may
    subclass it to hand `draw` what it needs besides the partials."""

    verdict: Verdict
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    n: int | None = None
    estimate: dict[str, Any] | None = None
    meaning: str = ""
    resolved: dict[str, Any] = field(default_factory=dict)


C = TypeVar("C", bound=AuditConfig)


class Audit(Generic[C, P]):
    """One audit. A subclass sets `info` (its metadata), `Config` and `Partial`, and writes hooks."""

    info: ClassVar[AuditInfo]
    name: ClassVar[str]
    shardable: ClassVar[bool] = False
    Config: ClassVar[type[AuditConfig]]
    Partial: ClassVar[type[ShardPartial]] = NoPartial
    # What a shard's context holds. "range": only the images of its range, which are independent of
    # the others (missingness bias). "all": the whole sample, because the audit first picks its own
    # images from all of them; its ranges are then positions in that pick, and every shard makes the
    # same pick.
    shard_inputs: ClassVar[Literal["range", "all"]] = "range"
    # Config fields left out of the recorded config (pydantic `exclude`), e.g. bytes.
    unrecorded: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "info" in cls.__dict__:
            cls.name = cls.info.name
            cls.shardable = cls.info.shardable
        own = [m for m in FLOW if m in cls.__dict__]
        if own and not cls.__dict__.get("legacy_flow", False):
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(own)}: the base owns the flow; an audit writes "
                "the hooks pick, shard, judge and draw"
            )

    # ---- hooks ----------------------------------------------------------------------------------
    def positions(self, n_images: int, config: C) -> int:
        """How many positions the plan covers: the config's `n_images` when it has one (the pick's
        size), else every image."""
        cap = getattr(config, "n_images", None)
        return n_images if cap is None else min(int(cap), n_images)

    def cut(self, n: int, n_shards: int) -> list[range]:
        """`n_shards` contiguous ranges tiling [0, n): even by default; an audit whose batches must
        not be split overrides it (`ranges.block_ranges`)."""
        return even_ranges(n, n_shards)

    def pick(self, ctx: AuditContext, config: C, seed: int) -> Sequence[int]:
        """The images an "all" audit works on, one per position: a seeded, class-stratified, shuffled
        sample by labels (docs/audits.md, "Which images"); every shard makes the same pick."""
        from auditors.sampling import stratified_indices

        groups = ctx.labels.tolist() if ctx.labels is not None else [0] * ctx.n_images
        n = self.positions(ctx.n_images, config)
        return [int(i) for i in stratified_indices(groups, n, seed=seed)]

    def shard(self, ctx: AuditContext, config: C, work: Work) -> P:
        """The work of `work.positions`; the default does nothing (an audit that only judges)."""
        return NoPartial()  # type: ignore[return-value]

    def judge(self, meta: ShardMeta, config: C, shards: Shards[P]) -> Judgement:
        raise TypeError(f"{type(self).__name__} must implement judge()")

    def draw(self, meta: ShardMeta, config: C, shards: Shards[P], judgement: Judgement) -> list[Artifact]:
        """The files the audit writes under `meta.out_dir` (`context.artifact_path`); none by default."""
        return []

    def forward_passes(self, config: C, shape: RunShape) -> Passes | None:
        """What this config costs on a run of `shape`, for the estimate before a run (auditors.cost):
        images through the model by kind, model calls and plots. None: the audit does not say."""
        return None

    @staticmethod
    def patch_size(ctx: AuditContext, config: AuditConfig) -> int:
        """The config's `patch_size`, else the context's default (the ViT's patch, or side/8)."""
        own = getattr(config, "patch_size", None)
        return int(own) if own else ctx.default_patch_size()

    def recorded_config(self, config: C, seed: int, resolved: dict[str, Any]) -> dict[str, Any]:
        """The config written into the report: as given, with the seed and resolved values filled in."""
        return {**config.model_dump(exclude=self.unrecorded), "seed": seed, **resolved}

    # ---- the flow (final) -----------------------------------------------------------------------
    def run(self, ctx: AuditContext, config: C) -> AuditResult:
        """A single run: the one-shard plan, merged (what every caller but the worker's fan-out uses)."""
        ctx.check_cancelled()
        ranges = self.plan_shards(ctx.n_images, config, 1)
        partials = [self.run_shard(ctx, config, r) for r in ranges]
        return self.merge(ShardMeta.from_context(ctx), config, partials)

    def plan_shards(self, n_images: int, config: C, n_shards: int) -> list[range]:
        """Non-empty contiguous ranges tiling the positions (one when the audit is not shardable)."""
        n = self.positions(n_images, config)
        ranges = self.cut(n, n_shards if self.shardable else 1)
        check_tiling([{"start": r.start, "stop": r.stop} for r in ranges], n)
        return ranges

    def run_shard(self, ctx: AuditContext, config: C, indices: range) -> dict[str, Any]:
        """One shard's partial as JSON, exactly as a worker stores it and a merge reads it back."""
        t0 = time.perf_counter()
        ctx.check_cancelled()
        seed = ctx.seed_for(config)
        if self.shard_inputs == "range":
            lo, hi = ctx.image_offset, ctx.image_offset + ctx.n_images
            picked: Sequence[int] = range(ctx.n_images)
        else:
            lo, hi = 0, self.positions(ctx.n_images, config)
            picked = self.pick(ctx, config, seed)
            if (
                len(picked) > hi
                or len(set(picked)) != len(picked)
                or any(not 0 <= i < ctx.n_images for i in picked)
            ):
                raise ValueError(f"{self.name}: the pick must be at most {hi} distinct images of the sample")
        if indices.step != 1 or not len(indices) or indices.start < lo or indices.stop > hi:
            empty = "" if len(indices) else " (it is empty)"
            raise ValueError(
                f"{self.name}: shard {indices} is not a contiguous range inside {lo}..{hi}{empty}"
            )
        partial = self.shard(ctx, config, Work(seed, indices, picked))
        if not isinstance(partial, self.Partial):
            raise TypeError(
                f"{self.name}.shard returned {type(partial).__name__}, not {self.Partial.__name__}"
            )
        out = {
            "audit": self.name,
            "start": indices.start,
            "stop": indices.stop,
            "seed": seed,
            "seconds": round(time.perf_counter() - t0, 3),
            **partial.model_dump(mode="json"),
        }
        loaded: dict[str, Any] = json.loads(json.dumps(out))
        return loaded

    def merge(self, meta: ShardMeta, config: C, partials: Sequence[dict[str, Any]]) -> AuditResult:
        """The result from every shard's partial: checked, typed, judged, drawn and stamped."""
        t0 = time.perf_counter()
        seed = meta.seed if config.seed is None else int(config.seed)
        if not partials:
            raise ValueError(f"no {self.name} shard to merge: the sample has no images")
        for p in partials:
            if p.get("audit") != self.name:
                raise ValueError(f"a partial of {p.get('audit')!r} was handed to the {self.name} merge")
            if p.get("seed") != seed:
                raise ValueError("shards were run with a different seed; rerun them with one config")
        ordered = check_tiling(partials, self.positions(meta.n_images, config))
        parts = [
            self.Partial.model_validate({k: v for k, v in p.items() if k not in ENVELOPE}) for p in ordered
        ]
        for name in self.Partial.agreed:
            if any(getattr(q, name) != getattr(parts[0], name) for q in parts[1:]):
                raise ValueError(
                    f"shards were run with different settings ({name}); rerun them with one config"
                )
        shards: Shards[P] = Shards(seed, [range(int(p["start"]), int(p["stop"])) for p in ordered], parts)  # type: ignore[arg-type]
        judgement = self.judge(meta, config, shards)
        artifacts = self.draw(meta, config, shards, judgement)
        recorded = self.recorded_config(config, seed, judgement.resolved)
        shard_seconds = sum(float(p.get("seconds", 0.0)) for p in ordered)
        return AuditResult(
            name=self.name,
            verdict=judgement.verdict,
            summary=judgement.summary,
            metrics=judgement.metrics,
            findings=judgement.findings,
            artifacts=artifacts,
            config=recorded,
            seconds=round(shard_seconds + time.perf_counter() - t0, 3),
            role=self.info.role,
            n=judgement.n,
            estimate=judgement.estimate,
            meaning=judgement.meaning,
        )
