"""LIME consistency audit (Jain et al., ICLR 2022 §4-5; layer masking paper §LIME): docs/audits.md, "LIME consistency".

LIME ranks features by what happens when they are *removed*, so its explanations inherit the model's
missingness bias. Three checks say whether they can be trusted: the top-k removal test (own ranking vs
random order vs another model's ranking), consistency across fill colours, and stability across
perturbation seeds.

Hooks only (`auditors.audits.base`): a class-stratified pick (`shard.pick`), LIME per position
(`shard`), the statistics and verdict from the whole (`merge`, `verdict`), the figures (`artifacts`).
"""

from __future__ import annotations

from collections.abc import Sequence

from auditors.audits.base import Audit, Judgement, ShardMeta, Shards, Work
from auditors.audits.context import AuditContext
from auditors.audits.lime_consistency import INFO, artifacts, merge
from auditors.audits.lime_consistency import shard as sharding
from auditors.audits.lime_consistency.config import LimeConfig
from auditors.audits.lime_consistency.shard import LimePartial
from auditors.audits.lime_consistency.verdict import LimeJudgement
from auditors.methods.removal import REMEDY_FILLS
from auditors.passes import Passes, RunShape, masked_passes, native_strategy
from auditors.report import Artifact


class LimeConsistency(Audit[LimeConfig, LimePartial]):
    info = INFO
    Config = LimeConfig
    Partial = LimePartial
    shard_inputs = "all"  # every shard makes the class-stratified pick from the whole sample

    def forward_passes(self, config: LimeConfig, shape: RunShape) -> Passes:
        """n_samples per image per LIME run (each strategy, each fill, the second seed), then the
        removal curves (own and random order, k = 1..max_k) per strategy; overlays and two plots."""
        n = min(config.n_images, shape.n_images)
        patch = config.patch_size or shape.default_patch
        n_feat = (shape.height // patch) * (shape.width // patch) if config.features == "grid" else 150
        kmax = max(1, min(config.max_k, n_feat - 1))
        strategies = list(config.strategies or [native_strategy(shape) or REMEDY_FILLS[0]])
        runs = [*strategies, *(f for f in config.fills if f not in strategies), strategies[0]]
        # The pick is drawn by class: by label, else by a clean pass over every image; then a clean
        # pass over the pick.
        grouping = 0 if shape.labelled else shape.n_images
        total = Passes(
            forward=grouping + n, calls=2 - shape.labelled, figures=2 + (2 if config.n_show else 0)
        )
        for name in runs:
            total += masked_passes(name, n * config.n_samples, n)
        for name in strategies:
            total += masked_passes(name, 2 * n * kmax, 2)
        return total

    def pick(self, ctx: AuditContext, config: LimeConfig, seed: int) -> Sequence[int]:
        return sharding.pick(ctx, config.n_images, seed)

    def shard(self, ctx: AuditContext, config: LimeConfig, work: Work) -> LimePartial:
        return sharding.run_shard(ctx, config, work, self.patch_size(ctx, config))

    def judge(self, meta: ShardMeta, config: LimeConfig, shards: Shards[LimePartial]) -> Judgement:
        return merge.judge(meta, config, shards)

    def draw(
        self, meta: ShardMeta, config: LimeConfig, shards: Shards[LimePartial], judgement: Judgement
    ) -> list[Artifact]:
        assert isinstance(judgement, LimeJudgement)
        return artifacts.draw(meta, config, shards, judgement)
