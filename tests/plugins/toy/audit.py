"""The toy audit's computation: the share of the most predicted class, shard by shard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import Field

from auditors.audits.base import Audit, AuditConfig, Partial, ShardMeta
from auditors.audits.context import AuditContext
from auditors.engine import plain_logits
from auditors.methods.per_image_random import check_tiling, even_ranges
from auditors.report import AuditResult, Finding


class ToyConfig(AuditConfig):
    n_images: int = Field(default=64, ge=1)
    max_share: float = Field(default=0.5, gt=0, le=1)


class ToyAudit(Audit[ToyConfig]):
    name = "toy"
    Config = ToyConfig
    shardable = True

    def plan_shards(self, n_images: int, config: ToyConfig, n_shards: int) -> list[range]:
        return even_ranges(min(n_images, config.n_images), n_shards)

    def run_shard(self, ctx: AuditContext, config: ToyConfig, indices: range) -> Partial:
        stop = min(indices.stop, config.n_images)
        images = ctx.images[indices.start - ctx.image_offset : stop - ctx.image_offset]
        preds = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).argmax(1)
        ctx.report(1.0, "predicted")
        return {"start": indices.start, "stop": stop, "preds": preds.cpu().tolist()}

    def merge(self, meta: ShardMeta, config: ToyConfig, partials: Sequence[Partial]) -> AuditResult:
        ordered = check_tiling(partials, min(meta.n_images, config.n_images))
        preds = [p for part in ordered for p in part["preds"]]
        top, count = Counter(preds).most_common(1)[0]
        share = round(count / len(preds), 4)
        failed = share > config.max_share
        return AuditResult(
            name=self.name,
            verdict="fail" if failed else "pass",
            summary=f"'{meta.class_names[top]}' takes {share:.0%} of {len(preds)} predictions",
            metrics={
                "majority_share": share,
                "majority_class": meta.class_names[top],
                "n_images": len(preds),
            },
            findings=[
                Finding(
                    kind="majority_class", summary="one class dominates", class_name=meta.class_names[top]
                )
            ]
            if failed
            else [],
            config=self.recorded_config(
                config, meta.seed if config.seed is None else config.seed, {"n_images": len(preds)}
            ),
        )
