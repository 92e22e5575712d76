"""The status long-poll both faces share: `GET /v1/audits/{id}?wait=` and the dashboard's pending page
wait here, so they answer on the same change with the same fingerprint (ETag), and neither holds a
thread, connection or admission slot while it waits (`occulta.jobs.watch`)."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.deps import Scope
from api.limits import outside_admission
from api.schemas import AuditOut
from occulta.jobs import watch
from occulta.service import audits as service


def audit_out(scope: Scope, audit_id: str) -> AuditOut:
    """The caller's audit with its saved results (another tenant's is a 404)."""
    job = service.get_audit(scope.session, tenant_id=scope.tenant_id, audit_id=audit_id)
    return AuditOut.of(job, service.result_rows(scope.session, job_id=job.id))


def status_tag(out: AuditOut) -> str:
    """The audit's status fingerprint (its ETag), which a waiter passes back as `since`."""
    return watch.fingerprint(out.status, out.progress, out.message, out.verdict)


async def watched(
    request: Request, audit_id: str, scope: Scope, hold: float, since: str | None
) -> tuple[AuditOut, str]:
    """(audit, fingerprint) once it differs from `since` (or from the first read), is finished, or
    `hold` seconds passed."""
    watcher = _watcher(request)
    crowded = watcher.waiting >= request.app.state.settings.wait_max_clients  # degrade to plain polling
    if hold > 0 and not crowded:
        # The caller's last view still current: one small read, then wait without thread or connection.
        now = await run_in_threadpool(_peek, scope, audit_id)
        if now is not None and not watch.finished(now[0]) and since in (None, now[1]):
            async with outside_admission(request.scope):
                await watcher.changed(audit_id, now[1], hold)
    out = await run_in_threadpool(audit_out, scope, audit_id)
    return out, status_tag(out)


def _peek(scope: Scope, audit_id: str) -> tuple[str, str] | None:
    """(status, fingerprint), then the connection goes back to the pool (a waiter holds none)."""
    try:
        return watch.current(scope.session, audit_id, scope.tenant_id)
    finally:
        scope.session.close()


def _watcher(request: Request) -> watch.StatusWatcher:
    """One per app, made on first use (no await between the check and the set: no race)."""
    state = request.app.state
    if getattr(state, "status_watcher", None) is None:
        state.status_watcher = watch.StatusWatcher(state.sessions, tick=state.settings.wait_tick_seconds)
    watcher: watch.StatusWatcher = state.status_watcher
    return watcher
