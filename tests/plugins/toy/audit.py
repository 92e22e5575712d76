"""The toy audit's computation, as hooks only: the base class plans, picks (class-stratified), checks
ranges and seeds, merges and stamps; the audit says what a shard computes and what it concludes."""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from auditors.audits.base import Audit, Judgement, ShardMeta, ShardPartial, Shards, Work
from auditors.audits.context import AuditContext
from auditors.audits.info import AuditConfig
from auditors.engine import plain_logits
from auditors.report import Finding
from tests.plugins.toy import INFO


class ToyConfig(AuditConfig):
    n_images: int = Field(default=64, ge=1)
    max_share: float = Field(default=0.5, gt=0, le=1)


class ToyPartial(ShardPartial):
    preds: list[int]  # the clean prediction of each position of the shard


class ToyAudit(Audit[ToyConfig, ToyPartial]):
    info = INFO
    Config = ToyConfig
    Partial = ToyPartial
    shard_inputs = "all"

    def shard(self, ctx: AuditContext, config: ToyConfig, work: Work) -> ToyPartial:
        index = list(work.picked[work.positions.start : work.positions.stop])
        preds = plain_logits(ctx.model, ctx.images[index], mean=ctx.mean, std=ctx.std).argmax(1)
        ctx.report(1.0, "predicted")
        return ToyPartial(preds=preds.cpu().tolist())

    def judge(self, meta: ShardMeta, config: ToyConfig, shards: Shards[ToyPartial]) -> Judgement:
        preds = [p for part in shards.parts for p in part.preds]
        top, count = Counter(preds).most_common(1)[0]
        share = round(count / len(preds), 4)
        failed = share > config.max_share
        name = meta.class_names[top]
        return Judgement(
            verdict="fail" if failed else "pass",
            summary=f"'{name}' takes {share:.0%} of {len(preds)} predictions",
            metrics={"majority_share": share, "majority_class": name, "n_images": len(preds)},
            findings=[Finding(kind="majority_class", summary="one class dominates", class_name=name)]
            if failed
            else [],
            n=len(preds),
            resolved={"n_images": len(preds)},
        )
