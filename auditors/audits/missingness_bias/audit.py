"""Missingness bias (Jain et al., ICLR 2022, §3; layer-masking paper, Balasubramanian & Feizi 2023, §4).

Remove a random set of patches from every image at fractions d = 0, 0.1, ..., 0.9 with each strategy
(the same random sets for every strategy) and watch the predictions: a biased model does not merely
lose accuracy, it drifts toward a few *attractor* classes that it associates with the fill itself
(ResNet-50 + black fill at 50%: entropy 2.4 nats vs 6.87 clean, "maze" takes 35% of predictions).

Hooks only (`auditors.audits.base`): every image of the sample, independently (`shard_inputs ==
"range"`); a shard predicts (`shard`), the merge judges (`merge`), the files are drawn (`artifacts`).
"""

from __future__ import annotations

from auditors.audits.base import Audit, Judgement, ShardMeta, Shards, Work
from auditors.audits.context import AuditContext
from auditors.audits.missingness_bias import INFO, artifacts, merge
from auditors.audits.missingness_bias import shard as sharding
from auditors.audits.missingness_bias.config import MissingnessBiasConfig
from auditors.audits.missingness_bias.shard import MissingnessPartial
from auditors.passes import PIXEL_FILL_COUNT, Passes, RunShape, masked_passes, native_strategy
from auditors.report import Artifact


class MissingnessBias(Audit[MissingnessBiasConfig, MissingnessPartial]):
    """Does removing patches push predictions toward classes the fill itself evokes?"""

    info = INFO
    Config = MissingnessBiasConfig
    Partial = MissingnessPartial

    def forward_passes(self, config: MissingnessBiasConfig, shape: RunShape) -> Passes:
        """Clean predictions, then every image under every strategy at every fraction; four plots."""
        native = native_strategy(shape)
        names = config.strategies or ["black"] * PIXEL_FILL_COUNT + ([native] if native else [])
        n_frac = len({round(float(f), 4) for f in config.fractions} | {0.0})
        total = Passes(forward=shape.n_images, calls=1, figures=4)
        for name in names:
            total += masked_passes(name, shape.n_images * n_frac, n_frac)
        return total

    def positions(self, n_images: int, config: MissingnessBiasConfig) -> int:
        return n_images  # every image

    def shard(self, ctx: AuditContext, config: MissingnessBiasConfig, work: Work) -> MissingnessPartial:
        return sharding.run_shard(ctx, config, work, self.patch_size(ctx, config))

    def judge(
        self, meta: ShardMeta, config: MissingnessBiasConfig, shards: Shards[MissingnessPartial]
    ) -> Judgement:
        return merge.judge(meta, config, shards)

    def draw(
        self,
        meta: ShardMeta,
        config: MissingnessBiasConfig,
        shards: Shards[MissingnessPartial],
        judgement: Judgement,
    ) -> list[Artifact]:
        return artifacts.draw(meta, config, shards, judgement)
