"""SIS / overinterpretation audit (Carter et al. 2019; Carter et al., NeurIPS 2021): docs/audits.md, "SIS and overinterpretation".

A model overinterprets when it stays confident on a few pixels that mean nothing to a person. The
audit finds each confident image's sufficient input subset (SIS) with BackSelect, then measures how
small they are, how the model does on the 5% of pixels BackSelect keeps vs 5% random pixels, and
(optionally) whether a fresh model can learn the task from those 5% subsets alone.

Shardable: the audit first picks its images from the whole sample (confident ones, stratified by
class), so every shard sees every image and makes the same pick, then explains the positions of its
range of that pick (`shard.py`); the merge computes everything from the whole (`merge.py`). A single
run is the base class's one shard, merged: one code path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from auditors.audits.base import Audit, LegacyPartial, ShardMeta
from auditors.audits.context import AuditContext
from auditors.audits.ranges import even_ranges
from auditors.audits.sis import merge as merging
from auditors.audits.sis import shard
from auditors.audits.sis.config import NAME, SISConfig, batch_rows, choose_method
from auditors.methods.backselect import step_sizes
from auditors.passes import Passes, RunShape
from auditors.report import AuditResult

__all__ = ["SIS", "SISConfig"]


class SIS(Audit[SISConfig, Any]):
    legacy_flow = True
    name = NAME
    Config = SISConfig
    shardable = True
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

    def plan_shards(self, n_images: int, config: SISConfig, n_shards: int) -> list[range]:
        """Ranges of positions in the pick, cut only between whole batches (`batch_rows`). A batch
        costs about the same however many of its rows are padding, so a shard smaller than a batch
        would only repeat work (measured: 4 shards of 8 of a 32-image pick took 2.4x the compute of
        one run). The pick holds at most `n_images` of the config (fewer when fewer images are
        confident): a shard whose positions lie beyond it sends an empty partial."""
        n = min(config.n_images, n_images)
        rows = batch_rows(n, config.batch_rows)
        blocks = even_ranges(math.ceil(n / rows), n_shards)
        return [range(b.start * rows, min(n, b.stop * rows)) for b in blocks]

    def run_shard(self, ctx: AuditContext, config: SISConfig, indices: range) -> LegacyPartial:
        """`indices` are positions in the pick; the context holds the whole sample."""
        return shard.run_shard(ctx, config, indices)

    def merge(self, meta: ShardMeta, config: SISConfig, partials: Sequence[LegacyPartial]) -> AuditResult:
        return merging.merge(meta, config, partials)
