"""/v1/audits: create (idempotent), list/filter/paginate, status, cancel, report files, artifacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import QueueDep, ScopeDep, SettingsDep, StoreDep
from api.files import artifact_file, stored_file
from api.schemas import ERRORS, AuditIn, AuditOut, AuditPage, Status
from api.waiting import watched
from occulta.db import AuditJob
from occulta.service import audits as service

router = APIRouter(prefix="/audits", tags=["audits"], responses=ERRORS)


def _out(scope: ScopeDep, job: AuditJob) -> AuditOut:
    return AuditOut.of(job, service.result_rows(scope.session, job_id=job.id))


@router.post(
    "",
    status_code=202,
    response_model=AuditOut,
    responses={
        200: {"model": AuditOut, "description": "replay of an earlier request with this Idempotency-Key"},
        409: {"description": "Idempotency-Key reused with another body"},
        429: {"description": "the tenant holds its limit of queued and running audits (`Retry-After`)"},
    },
    summary="Queue an audit battery",
)
def create_audit(
    body: AuditIn,
    scope: ScopeDep,
    queue: QueueDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """The row and its outbox message commit together before anything is sent, so a worker never sees a
    job that does not exist and a broker outage only delays the audit (see `occulta.jobs.outbox`)."""
    submitted = service.submit_audit(
        scope.session,
        queue,
        store,
        tenant_id=scope.tenant_id,
        model_id=body.model_id,
        dataset_id=body.dataset_id,
        audits=body.audits,
        configs=body.config,
        seed=body.seed,
        samples=body.samples,
        regions=body.regions,
        idempotency_key=idempotency_key,
        policy=queue.policy,
    )
    job, created = submitted.job, submitted.created
    out = _out(scope, job)
    out.estimate = submitted.estimate
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/audits/{job.id}"},
    )


@router.get("", response_model=AuditPage, summary="List audits, newest first")
def list_audits(
    scope: ScopeDep,
    status: Status | None = None,
    model_id: str | None = None,
    verdict: Annotated[str | None, Query(pattern="^(pass|fail|inconclusive|error)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> AuditPage:
    rows, next_cursor = service.list_audits(
        scope.session,
        tenant_id=scope.tenant_id,
        status=status,
        model_id=model_id,
        verdict=verdict,
        limit=limit,
        cursor=cursor,
    )
    return AuditPage(items=[AuditOut.of(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/{audit_id}",
    response_model=AuditOut,
    responses={200: {"headers": {"ETag": {"description": "the status's fingerprint, for `since`"}}}},
)
async def get_audit_status(
    audit_id: str,
    request: Request,
    response: Response,
    scope: ScopeDep,
    settings: SettingsDep,
    wait: Annotated[
        float,
        Query(ge=0, le=120, description="seconds to hold the answer until the status or progress changes"),
    ] = 0,
    since: Annotated[
        str | None, Query(max_length=64, description="the ETag last seen: answer at once if it is stale")
    ] = None,
) -> AuditOut:
    """The audit's status. With `wait`, a long-poll: the answer comes as soon as the status, progress
    or message differs from `since` (or from the first read), or after `wait` seconds (at most
    `OCCULTA_WAIT_MAX_SECONDS`); meanwhile the request holds no thread, connection or admission slot,
    and one status read per tick serves every waiting client (`occulta.jobs.watch`)."""
    out, tag = await watched(request, audit_id, scope, min(wait, settings.wait_max_seconds), since)
    response.headers["ETag"] = f'"{tag}"'
    return out


@router.post(
    "/{audit_id}/cancel",
    response_model=AuditOut,
    status_code=202,
    responses={409: {"description": "the audit already finished"}},
)
def cancel_audit(audit_id: str, scope: ScopeDep) -> AuditOut:
    """A queued audit is cancelled at once; a running one stops at its next batch."""
    return _out(scope, service.cancel_audit(scope.session, tenant_id=scope.tenant_id, audit_id=audit_id))


def _report_file(audit_id: str, which: str, scope: ScopeDep, store: StoreDep) -> Response:
    key, media_type = service.report_file(
        scope.session, store, tenant_id=scope.tenant_id, audit_id=audit_id, which=which
    )
    return stored_file(store, key, media_type)


@router.get(
    "/{audit_id}/report",
    summary="The report (JSON, auditors.report.Report)",
    responses={200: {"content": {"application/json": {}}}},
)
def get_report(audit_id: str, scope: ScopeDep, store: StoreDep) -> Response:
    return _report_file(audit_id, "report", scope, store)


@router.get(
    "/{audit_id}/report.html",
    summary="The self-contained HTML report",
    responses={200: {"content": {"text/html": {}}}},
)
def get_report_html(audit_id: str, scope: ScopeDep, store: StoreDep) -> Response:
    return _report_file(audit_id, "report.html", scope, store)


@router.get(
    "/{audit_id}/report.md",
    summary="The Markdown summary (for a pull-request comment)",
    responses={200: {"content": {"text/markdown": {}}}},
)
def get_report_md(audit_id: str, scope: ScopeDep, store: StoreDep) -> Response:
    return _report_file(audit_id, "report.md", scope, store)


@router.get(
    "/{audit_id}/artifacts/{path:path}",
    summary="An artifact: 307 to a presigned URL on S3, streamed from local storage",
    responses={307: {"description": "redirect to a presigned URL"}},
)
def get_artifact(
    audit_id: str, path: str, scope: ScopeDep, store: StoreDep, settings: SettingsDep
) -> Response:
    row = service.find_artifact(scope.session, tenant_id=scope.tenant_id, audit_id=audit_id, path=path)
    return artifact_file(store, row, expires=settings.presign_expiry_seconds)
