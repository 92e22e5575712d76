"""/v1/gate: evaluate a policy against an audit's stored report (the CI gate, server side)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ScopeDep, StoreDep
from api.schemas import ERRORS, GateIn
from occulta.gate import GateResult
from occulta.service.gate import gate_audit

router = APIRouter(prefix="/gate", tags=["gate"], responses=ERRORS)


@router.post("", response_model=GateResult, summary="Evaluate a gate policy (YAML) against an audit's report")
def gate(body: GateIn, scope: ScopeDep, store: StoreDep) -> GateResult:
    """The policy is parsed first so a typo is a 422 even before the audit has finished."""
    return gate_audit(
        scope.session, store, tenant_id=scope.tenant_id, audit_id=body.audit_id, policy=body.policy
    )
