"""/v1/audits: create (idempotent), list/filter/paginate, status, cancel, report files, artifacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from sqlalchemy import select

from api.deps import QueueDep, ScopeDep, SettingsDep, StoreDep
from api.schemas import ERRORS, AuditIn, AuditOut, AuditPage, AuditResultSummary, Status
from auditors.report import Report
from occulta import jobs
from occulta.db import ArtifactRecord, AuditJob, AuditResultRecord
from occulta.errors import NotFoundError
from occulta.service import audits as service
from occulta.storage import audit_prefix, validate_relative_path

router = APIRouter(prefix="/audits", tags=["audits"], responses=ERRORS)

REPORT_FILES = {
    "report": ("report.json", "application/json"),
    "report.html": ("report.html", "text/html"),
    "report.md": ("summary.md", "text/markdown; charset=utf-8"),
}


def _out(scope: ScopeDep, job: AuditJob) -> AuditOut:
    rows = scope.session.scalars(
        select(AuditResultRecord).where(AuditResultRecord.job_id == job.id).order_by(AuditResultRecord.id)
    )
    results = [
        AuditResultSummary(name=r.name, verdict=r.verdict, summary=str(r.result.get("summary", "")))
        for r in rows
    ]
    return AuditOut.of(job, results)


@router.post(
    "",
    status_code=202,
    response_model=AuditOut,
    responses={
        200: {"model": AuditOut, "description": "replay of an earlier request with this Idempotency-Key"},
        409: {"description": "Idempotency-Key reused with another body"},
    },
    summary="Queue an audit battery",
)
def create_audit(
    body: AuditIn,
    scope: ScopeDep,
    queue: QueueDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """The row is committed before the task is sent, so a worker never sees a job that does not exist;
    if the send fails the beat sweep re-sends it."""
    job, created = service.create_audit(
        scope.session,
        tenant_id=scope.tenant_id,
        model_id=body.model_id,
        dataset_id=body.dataset_id,
        audits=body.audits,
        configs=body.config,
        seed=body.seed,
        samples=body.samples,
        regions=[r.model_dump(mode="json", exclude_none=True) for r in body.regions or []] or None,
        idempotency_key=idempotency_key,
    )
    if created:
        queue.send_audit(job.id)
    out = _out(scope, job)
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


@router.get("/{audit_id}", response_model=AuditOut)
def get_audit(audit_id: str, scope: ScopeDep) -> AuditOut:
    return _out(scope, scope.get(AuditJob, audit_id, "audit"))


@router.post(
    "/{audit_id}/cancel",
    response_model=AuditOut,
    status_code=202,
    responses={409: {"description": "the audit already finished"}},
)
def cancel_audit(audit_id: str, scope: ScopeDep) -> AuditOut:
    """A queued audit is cancelled at once; a running one stops at its next batch."""
    scope.get(AuditJob, audit_id, "audit")
    jobs.request_cancel(scope.session, audit_id, tenant_id=scope.tenant_id)
    return _out(scope, scope.get(AuditJob, audit_id, "audit"))


def _report_file(audit_id: str, which: str, scope: ScopeDep, store: StoreDep) -> Response:
    job = scope.get(AuditJob, audit_id, "audit")
    name, media_type = REPORT_FILES[which]
    key = audit_prefix(job.tenant_id, job.id) + name
    if not store.exists(key):
        raise NotFoundError(f"audit {audit_id} has no report yet (status: {job.status})")
    return StreamingResponse(store.iter_bytes(key), media_type=media_type)


def load_report(audit_id: str, scope: ScopeDep, store: StoreDep) -> Report:
    """The parsed report of a finished audit; the gate and the dashboard read it through here."""
    job = scope.get(AuditJob, audit_id, "audit")
    key = audit_prefix(job.tenant_id, job.id) + "report.json"
    if not store.exists(key):
        raise NotFoundError(f"audit {job.id} has no report yet (status: {job.status})")
    return Report.model_validate_json(store.read_bytes(key))


def find_artifact(audit_id: str, path: str, scope: ScopeDep) -> ArtifactRecord:
    """One artifact row of the caller's audit; the path is validated before it is looked up."""
    job = scope.get(AuditJob, audit_id, "audit")
    clean = validate_relative_path(path)
    row = scope.session.scalars(
        select(ArtifactRecord).where(ArtifactRecord.job_id == job.id, ArtifactRecord.path == clean)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"audit {audit_id} has no artifact {clean}")
    return row


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
    row = find_artifact(audit_id, path, scope)
    url = store.presigned_url(
        row.storage_key, expires=settings.presign_expiry_seconds, media_type=row.media_type
    )
    if url is not None:
        return RedirectResponse(url, status_code=307)
    return StreamingResponse(store.iter_bytes(row.storage_key), media_type=row.media_type)
