"""/v1/gate: evaluate a policy against an audit's stored report (the CI gate, server side)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ScopeDep, StoreDep
from api.schemas import ERRORS, GateIn
from auditors.report import Report
from occulta.db import AuditJob
from occulta.errors import NotFoundError
from occulta.gate import GateResult, evaluate, load_policy
from occulta.storage import audit_prefix

router = APIRouter(prefix="/gate", tags=["gate"], responses=ERRORS)


@router.post("", response_model=GateResult, summary="Evaluate a gate policy (YAML) against an audit's report")
def gate(body: GateIn, scope: ScopeDep, store: StoreDep) -> GateResult:
    """The policy is parsed first so a typo is a 422 even before the audit has finished."""
    policy = load_policy(body.policy)
    job = scope.get(AuditJob, body.audit_id, "audit")
    key = audit_prefix(job.tenant_id, job.id) + "report.json"
    if not store.exists(key):
        raise NotFoundError(f"audit {job.id} has no report to gate (status: {job.status})")
    return evaluate(Report.model_validate_json(store.read_bytes(key)), policy)
