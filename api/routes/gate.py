"""/v1/gate: evaluate a policy against an audit's stored report (the CI gate, server side)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ScopeDep, StoreDep
from api.routes.audits import load_report
from api.schemas import ERRORS, GateIn
from occulta.gate import GateResult, evaluate, load_policy

router = APIRouter(prefix="/gate", tags=["gate"], responses=ERRORS)


@router.post("", response_model=GateResult, summary="Evaluate a gate policy (YAML) against an audit's report")
def gate(body: GateIn, scope: ScopeDep, store: StoreDep) -> GateResult:
    """The policy is parsed first so a typo is a 422 even before the audit has finished."""
    policy = load_policy(body.policy)
    return evaluate(load_report(body.audit_id, scope, store), policy)
