"""SIS / overinterpretation audit (Carter et al. 2019; Carter et al., NeurIPS 2021): docs/audits.md, "SIS and overinterpretation".

A model overinterprets when it stays confident on a few pixels that mean nothing to a person. The
audit finds each confident image's sufficient input subset (SIS) with BackSelect, then measures how
small they are, how the model does on the 5% of pixels BackSelect keeps vs 5% random pixels, and
(optionally) whether a fresh model can learn the task from those 5% subsets alone.

Hooks only (`auditors.audits.base`): the pick is the confident images, stratified by class
(`shard.make_pick`, one clean pass over the sample that every shard makes alike); a shard explains the
positions of its range (`shard`); the merge judges the whole and draws the figures (`merge`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from auditors.audits.base import Audit, Judgement, ShardMeta, Shards, Work
from auditors.audits.context import AuditContext
from auditors.audits.ranges import block_ranges
from auditors.audits.sis import INFO, artifacts, merge
from auditors.audits.sis import shard as sharding
from auditors.audits.sis.choices import batch_rows, choose_method
from auditors.audits.sis.config import SISConfig
from auditors.audits.sis.shard import SISPartial
from auditors.methods.backselect import step_sizes
from auditors.passes import Passes, RunShape
from auditors.report import Artifact


class SIS(Audit[SISConfig, SISPartial]):
    info = INFO
    Config = SISConfig
    Partial = SISPartial
    shard_inputs = "all"

    def forward_passes(self, config: SISConfig, shape: RunShape) -> Passes:
        """A single run: the clean pass over every image (the pick), then per explained image, in
        batches padded to `batch_rows`: fully masked, f(x), sufficiency and the two 5% subsets, and
        BackSelect (exact: n(n+1)/2 passes per image of n pixels; gradient: a forward + backward and a
        check per step, `step_sizes`). Only confident images are explained, so this is an upper
        bound; a sharded run adds the pick and the fully masked pass to every shard. Plots: overlays
        and a histogram."""
        n = min(config.n_images, shape.n_images)
        rows = batch_rows(n, config.batch_rows)
        batches = math.ceil(n / rows)
        padded = batches * rows
        n_px = shape.height * shape.width
        exact = choose_method(config, n_px, shape.is_cuda) == "exact"
        total = Passes(
            forward=shape.n_images + 5 * padded,
            calls=1 + 5 * batches,
            figures=1 + (2 if config.n_show else 0),
        )
        steps = len(step_sizes(n_px, config.gradient_k))
        if exact:
            total += Passes(forward=n * n_px * (n_px + 1) // 2, calls=n_px * n)
        else:
            total += Passes(forward=steps * padded, gradient=steps * padded, calls=2 * steps * batches)
        if config.retrain_on_subsets:
            m = min(config.retrain_images, shape.n_images)
            total += Passes(
                forward=steps * m, gradient=steps * m + config.retrain_epochs * m, calls=2 * steps
            )
        return total

    def cut(self, n: int, n_shards: int, config: SISConfig) -> list[range]:
        """Ranges of positions in the pick, cut only between whole batches (`batch_rows`). A batch
        costs about the same however many of its rows are padding, so a shard smaller than a batch
        would only repeat work (measured: 4 shards of 8 of a 32-image pick took 2.4x the compute of
        one run). The pick holds at most `n` images (fewer when fewer are confident): a shard whose
        positions lie beyond it sends an empty partial."""
        return block_ranges(n, n_shards, batch_rows(n, config.batch_rows))

    def pick(self, ctx: AuditContext, config: SISConfig, seed: int) -> Sequence[int]:
        return sharding.make_pick(ctx, config, seed)

    def shard(self, ctx: AuditContext, config: SISConfig, work: Work) -> SISPartial:
        return sharding.run_shard(ctx, config, work)

    def judge(self, meta: ShardMeta, config: SISConfig, shards: Shards[SISPartial]) -> Judgement:
        return merge.judge(meta, config, shards)

    def draw(
        self, meta: ShardMeta, config: SISConfig, shards: Shards[SISPartial], judgement: Judgement
    ) -> list[Artifact]:
        return artifacts.draw(meta, config, shards, judgement)
