"""A registered audit with a config, so audit creation can be tested without running anything."""

from __future__ import annotations

from typing import Any

from auditors.audits.base import Audit, AuditConfig, AuditInfo
from auditors.report import AuditResult

INFO = AuditInfo(
    name="test_noop",
    title="No-op",
    checks="nothing; the service tests create jobs with it",
    implementation="tests.plugins.noop:NoopAudit",
)


class NoopConfig(AuditConfig):
    threshold: float = 0.5


class NoopAudit(Audit[NoopConfig]):
    name = "test_noop"
    Config = NoopConfig

    def compute(self, ctx: Any, config: NoopConfig, seed: int) -> AuditResult:
        return AuditResult(name=self.name, verdict="pass", summary="nothing to see")
