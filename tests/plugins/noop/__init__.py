"""A registered audit with a config, so audit creation can be tested without running anything."""

from __future__ import annotations

from auditors.audits.base import Audit, Judgement, NoPartial, ShardMeta, Shards
from auditors.audits.info import AuditConfig, AuditInfo

INFO = AuditInfo(
    name="test_noop",
    title="No-op",
    checks="nothing; the service tests create jobs with it",
    implementation="tests.plugins.noop:NoopAudit",
    picks="no images",
)


class NoopConfig(AuditConfig):
    threshold: float = 0.5


class NoopAudit(Audit[NoopConfig, NoPartial]):
    info = INFO
    Config = NoopConfig

    def judge(self, meta: ShardMeta, config: NoopConfig, shards: Shards[NoPartial]) -> Judgement:
        return Judgement(verdict="pass", summary="nothing to see")
