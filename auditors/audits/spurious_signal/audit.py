"""Spurious-signal audit: does the model use a watermark, a ruler, a tint instead of the object?

docs/audits.md, "Spurious signals" (PAIR explorable 2022; Zhou et al. 2021; Adebayo et al. 2022). For each
suspected region (from the config or `ctx.regions`): the share of the top-q salient pixels in the box
against its area, and the stamp test that saliency cannot replace, judged against its null
(`discover.region_test`). Without a hint, `discover.discover` finds each class's fixed marks by their
content, confirms them by the stamp test against random content with Holm's correction, and tests each
class's colour cast globally. A confirmed region (`spurious_region`) or cast (`global_shortcut`) fails the
audit; every finding carries n, its interval and its corrected p-value.

The audit is shardable: a shard (`shard`) computes the saliency of a range of positions in the audit's
sample and the tests dealt to it; the merge (`assemble`) judges them without the model. A single run is
the one-shard plan merged, so both share one code path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from auditors.audits.base import Audit, AuditConfig, Partial, ShardMeta
from auditors.audits.context import AuditContext
from auditors.audits.spurious_signal import assemble, shard
from auditors.audits.spurious_signal.verdict import meaning as _meaning
from auditors.audits.spurious_signal.verdict import strongest_effect as _strongest_effect
from auditors.cost import PIXEL_FILL_COUNT, Passes, RunShape, masked_passes, native_strategy
from auditors.methods.saliency import METHODS
from auditors.regions import Region
from auditors.report import AuditResult

__all__ = ["AUDIT", "SpuriousConfig", "SpuriousSignal", "_meaning", "_strongest_effect"]

AUDIT = "spurious_signal"


class SpuriousConfig(AuditConfig):
    regions: list[Region] = Field(default_factory=list)
    methods: list[str] = Field(
        default_factory=lambda: ["gradient_squared", "smoothgrad", "integrated_gradients"]
    )
    q: float = Field(default=0.005, gt=0, le=1)
    n_images: int = Field(default=256, ge=2)
    n_samples: int = Field(default=16, ge=1, description="SmoothGrad noisy copies")
    noise: float = Field(default=0.15, ge=0, description="SmoothGrad sigma, share of the [0,1] range")
    steps: int = Field(default=32, ge=2, description="integrated-gradients steps")
    patch_size: int | None = Field(
        default=None, description="occlusion box / discovery stride; None: the model's"
    )
    strategy: str | None = Field(
        default=None, description="removal strategy; None: least-biased native/blur/mean"
    )
    discovery: bool = True
    global_test: bool = Field(
        default=True, description="test each class's colour cast (a non-local shortcut)"
    )
    max_candidates: int = Field(default=8, ge=1)
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="family-wise error level of the content null and the stamp tests",
    )
    min_flip: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="the smallest excess of stamp flips over the null a reported shortcut must cause",
    )
    n_permutations: int = Field(default=50, ge=19, description="label permutations behind the content null")
    max_recipients: int = Field(default=128, ge=8, description="other-class images each stamp test uses")
    share_threshold: float = 0.5
    enrichment_threshold: float = 10.0
    min_group: int = Field(default=8, ge=2)
    n_random_boxes: int = Field(default=8, ge=1)
    n_overlays: int = Field(default=8, ge=0)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in METHODS]
        if bad:
            raise ValueError(f"unknown saliency method(s) {bad}; available: {', '.join(METHODS)}")
        return v


class SpuriousSignal(Audit[SpuriousConfig]):
    name = AUDIT
    Config = SpuriousConfig
    shardable = True
    # Every shard needs the whole sample: the audit picks its own images, and discovery's candidates
    # and the stamp tests' recipients come from all of them.
    shard_inputs: ClassVar[Literal["range", "all"]] = "all"

    def plan_shards(self, n_images: int, config: SpuriousConfig, n_shards: int) -> list[range]:
        """Positions in the audit's own sample, cut only between saliency blocks (`shard.plan`)."""
        return shard.plan(min(config.n_images, n_images), n_shards)

    def run_shard(self, ctx: AuditContext, config: SpuriousConfig, indices: range) -> Partial:
        """The saliency of positions `indices` and the tests dealt to them (`shard.run_shard`)."""
        return shard.run_shard(ctx, config, indices, self.patch_size(ctx, config))

    def merge(self, meta: ShardMeta, config: SpuriousConfig, partials: Sequence[Partial]) -> AuditResult:
        """The result from the partials, without the model (`assemble.merge_partials`), with the
        config recorded as `run` records it (a worker's merge does not go through `run`)."""
        result = assemble.merge_partials(meta, config, partials)
        result.config = self.recorded_config(config, meta.seed, {})
        return result

    def forward_passes(self, config: SpuriousConfig, shape: RunShape) -> Passes:
        """Saliency (a backward per image per SmoothGrad sample / IG step), then per region or
        discovered candidate the stamp test against its null and the removal test, and the global
        colour test per class. The
        removal strategy is costed as the model's native one (what the bias check usually picks);
        every candidate counts (an upper bound)."""
        n = min(config.n_images, shape.n_images)
        patch = config.patch_size or shape.default_patch
        per_class = math.ceil(n / max(1, shape.num_classes))
        native = native_strategy(shape)
        strategy = config.strategy or native or "blur"
        total = Passes(forward=n, calls=1, figures=2 + (2 if config.n_overlays else 0))
        if config.strategy is None:  # the bias of native, blur and mean on up to 32 images
            total += Passes(forward=3 * min(32, n), calls=3) + masked_passes(native, min(32, n))
        batches = math.ceil(n / shard.block_size(n))  # saliency runs in blocks of positions
        for method in config.methods:
            if method in ("gradient", "gradient_squared"):
                total += Passes(gradient=n, calls=batches)
            elif method == "smoothgrad":  # a block's noisy copies go in one call
                total += Passes(gradient=n * config.n_samples, calls=batches)
            elif method == "integrated_gradients":
                total += Passes(gradient=n * config.steps, calls=batches * math.ceil(config.steps / 4))
            else:  # occlusion
                windows = (shape.height // patch) * (shape.width // patch)
                total += Passes(forward=n, calls=1) + masked_passes(strategy, n * windows, n)
        # A stamp test: up to max_recipients other-class images, stamped and with the paired null
        # patch; a removal test: the mark's class images with its box and n_random_boxes random boxes.
        recipients = min(config.max_recipients, n)
        confirm = Passes(forward=2 * recipients, calls=2) + masked_passes(
            strategy, per_class * (1 + config.n_random_boxes), 2
        )
        for _ in range(shape.n_regions + len(config.regions)):
            total += confirm
        if config.discovery:  # candidates come from pixel statistics (no model); each is then tested
            for _ in range(config.max_candidates):
                total += confirm
        if config.global_test:  # per class: the cast moved onto others and off its own, each with a null
            total += Passes(forward=4 * n, calls=4 * shape.num_classes)
        if shape.has_object_masks:
            total += Passes(forward=2 * n * PIXEL_FILL_COUNT, calls=2 * PIXEL_FILL_COUNT)
            total += masked_passes(native, 2 * n, 2)
        return total

    def recorded_config(self, config: SpuriousConfig, seed: int, resolved: dict[str, Any]) -> dict[str, Any]:
        """The config as given (its `seed` left unresolved), as this audit has always recorded it, so
        reports stay comparable with earlier ones; artifacts are left out (they are bytes)."""
        return config.model_dump(exclude={"regions": {"__all__": {"artifact"}}})
