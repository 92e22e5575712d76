"""The server-side gate: a policy (YAML text) evaluated against an audit's stored report, for
`POST /v1/gate` and the dashboard's gate page alike."""

from __future__ import annotations

from sqlalchemy.orm import Session

from occulta.gate import GateResult, evaluate, load_policy
from occulta.service.audits import load_report
from occulta.storage import ObjectStore


def gate_audit(
    session: Session, store: ObjectStore, *, tenant_id: str, audit_id: str, policy: str
) -> GateResult:
    """The policy is parsed first, so a typo is a PolicyError (422) even before the audit finishes;
    another tenant's audit is a NotFoundError (404)."""
    parsed = load_policy(policy)
    report = load_report(session, store, tenant_id=tenant_id, audit_id=audit_id)
    return evaluate(report, parsed)
