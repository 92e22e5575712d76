"""Spurious-signal audit: does the model use a watermark, a ruler, a tint instead of the object?

docs/audits.md, "Spurious signals" (PAIR explorable 2022; Zhou et al. 2021; Adebayo et al. 2022). For each
suspected region (from the config or `ctx.regions`): the share of the top-q salient pixels in the box
against its area, and the stamp test that saliency cannot replace, judged against its null
(`discover.region_test`). Without a hint, discovery finds each class's fixed marks by their content,
confirms them by the stamp test against random content with Holm's correction, and tests each class's
colour cast globally. A confirmed region (`spurious_region`) or cast (`global_shortcut`) fails the
audit; every finding carries n, its interval and its corrected p-value.

Hooks only (`auditors.audits.base`): the pick is a seeded random sample (`shard.sample_index`), a
shard computes the saliency of a range of positions and the tests dealt to it (`shard`), the merge
judges them without the model and draws the files (`merge`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from auditors.audits.base import Audit, Judgement, ShardMeta, Shards, Work
from auditors.audits.context import AuditContext
from auditors.audits.ranges import block_ranges
from auditors.audits.spurious_signal import INFO
from auditors.audits.spurious_signal import merge as merging
from auditors.audits.spurious_signal import shard as sharding
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.audits.spurious_signal.lowlevel import STATISTICS as LOWLEVEL_STATISTICS
from auditors.audits.spurious_signal.saliency_pass import block_size
from auditors.audits.spurious_signal.shard import SpuriousPartial
from auditors.audits.spurious_signal.verdict import SpuriousJudgement
from auditors.passes import PIXEL_FILL_COUNT, Passes, RunShape, masked_passes, native_strategy
from auditors.report import Artifact


class SpuriousSignal(Audit[SpuriousConfig, SpuriousPartial]):
    info = INFO
    Config = SpuriousConfig
    Partial = SpuriousPartial
    # Every shard needs the whole sample: the audit picks its own images, and discovery's candidates
    # and the stamp tests' recipients come from all of them.
    shard_inputs: ClassVar[Literal["range", "all"]] = "all"
    unrecorded: ClassVar[Any] = {"regions": {"__all__": {"artifact"}}}  # artifacts are bytes

    def cut(self, n: int, n_shards: int, config: SpuriousConfig) -> list[range]:
        """Positions cut only between saliency blocks (`saliency_pass.block_size`)."""
        return block_ranges(n, n_shards, block_size(n))

    def pick(self, ctx: AuditContext, config: SpuriousConfig, seed: int) -> Sequence[int]:
        return sharding.sample_index(ctx.n_images, config.n_images, seed)

    def shard(self, ctx: AuditContext, config: SpuriousConfig, work: Work) -> SpuriousPartial:
        return sharding.run_shard(ctx, config, work, self.patch_size(ctx, config))

    def judge(self, meta: ShardMeta, config: SpuriousConfig, shards: Shards[SpuriousPartial]) -> Judgement:
        return merging.judge(meta, config, shards)

    def draw(
        self, meta: ShardMeta, config: SpuriousConfig, shards: Shards[SpuriousPartial], judgement: Judgement
    ) -> list[Artifact]:
        assert isinstance(judgement, SpuriousJudgement)
        return merging.draw(meta, config, shards, judgement)

    def forward_passes(self, config: SpuriousConfig, shape: RunShape) -> Passes:
        """Saliency (a backward per image per SmoothGrad sample / IG step), then per region or
        discovered candidate the stamp test against its null and the removal test, the global
        colour test per class, and the low-level statistics the data screen keeps. The
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
        batches = math.ceil(n / block_size(n))  # saliency runs in blocks of positions
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
        # A stamp test: up to max_recipients other-class images, stamped and with each paired null
        # (other content, a random colour, and the similar mark of a stamp that could confirm); a
        # removal test: the mark's class images with its box and n_random_boxes random boxes.
        recipients = min(config.max_recipients, n)
        confirm = Passes(forward=4 * recipients, calls=4) + masked_passes(
            strategy, per_class * (1 + config.n_random_boxes), 2
        )
        for _ in range(shape.n_regions + len(config.regions)):
            total += confirm
        if config.discovery:  # candidates come from pixel statistics (no model); each is then tested,
            # fixed marks (up to max_candidates) and marks that move (up to two a class)
            moving = min(config.max_candidates, 2 * shape.num_classes) if config.moving_test else 0
            for _ in range(config.max_candidates + moving):
                total += confirm
        if config.global_test:  # per class: the cast moved onto others and off its own, each with a null
            total += Passes(forward=4 * n, calls=4 * shape.num_classes)
        if config.discovery and config.lowlevel_test:  # per screened class statistic: the level added
            # to up to max_recipients others with its mirror null (and noise of the same energy, for a
            # compression), and the class's own before and after it is taken off, and under the mirror
            tests = min(config.max_lowlevel_tests, len(LOWLEVEL_STATISTICS) * shape.num_classes)
            total += Passes(forward=tests * 3 * (recipients + per_class), calls=5 * tests)
        if config.discovery and config.pattern_test:  # per screened class pattern: added to others and
            # taken off the class's carriers, each against its shuffled null (the screen needs no model)
            tests = min(config.max_pattern_tests, shape.num_classes)
            total += Passes(forward=tests * 2 * (recipients + per_class), calls=4 * tests)
        if config.discovery and config.located_test:  # a gradient map per image (batches of 64), then per
            # screened class box: other classes' images as they are, with the class's pixels moved into
            # the box and under its two nulls; the carriers as they are, without the box and without a
            # random box of its size
            tests = min(config.max_located_tests, shape.num_classes)
            total += Passes(gradient=n, calls=math.ceil(n / 64))
            total += Passes(forward=tests * (4 * recipients + per_class), calls=5 * tests)
            total += masked_passes(strategy, 2 * tests * per_class, 2 * tests)
        if shape.has_object_masks:
            total += Passes(forward=2 * n * PIXEL_FILL_COUNT, calls=2 * PIXEL_FILL_COUNT)
            total += masked_passes(native, 2 * n, 2)
        return total
